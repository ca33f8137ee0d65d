"""pytest plugin (registered as the ``pytest11`` entry point ``gradguard``): the fixture ``gradguard_check`` for
users' own test suites, and ``pytest --gradguard`` for a summary of every check at the end of the session.

    def test_my_adapter_trains(gradguard_check):
        model = get_peft_model(base, MyLoraConfig(r=4))
        gradguard_check(model, **batch)        # fails the test with the problem table if a parameter will not train
"""
from __future__ import annotations

import pytest

_RESULTS = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("gradguard")
    group.addoption("--gradguard", action="store_true", default=False,
                    help="print a summary of every gradguard_check (parameters checked, problems) after the run")


def pytest_configure(config):
    config.stash[_RESULTS] = []


@pytest.fixture
def gradguard_check(request):
    """``gradguard_check(model, *inputs, loss_fn=None, optimizer=None, **model_kwargs) -> FlowReport``: gg.check on
    the model; a problem fails the test (the report's table is the failure message)."""
    from .flow import check

    def run(model, *inputs, **kwargs):
        report = check(model, *inputs, **kwargs)
        request.config.stash[_RESULTS].append((request.node.nodeid, report))
        if not report.ok:
            pytest.fail(f"gradguard_check: {len(report.problems)} parameter(s) will not train as intended\n{report}",
                        pytrace=False)
        return report

    return run


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not config.getoption("--gradguard"):
        return
    results = config.stash.get(_RESULTS, [])
    terminalreporter.section("gradguard")
    if not results:
        terminalreporter.write_line("no gradguard_check ran")
    for nodeid, report in results:
        verdict = "OK" if report.ok else f"{len(report.problems)} PROBLEM(S)"
        terminalreporter.write_line(f"{nodeid}: {verdict} - {len(report.checked)} parameters checked, "
                                    f"{len(report.notes)} note(s)")
        for p in report.problems:
            terminalreporter.write_line(f"    {p.param}: {p.kind} ({p.cause})")
