"""`gradguard gate` (src/python/gradguard/gate.py, schema gradguard.gate/N): the regression gate's checks against the
committed baseline. Each check has name, kind (correctness | speed), ok and detail; a speed check adds the baseline's
and this run's median (a gradguard/base time ratio, so dimensionless), their ratio and the rank test's p-value."""
from __future__ import annotations

from .document import FAIL, OK, Card, Cell, Part, Section, Table, finite, fmt_num, fmt_times, plural, verdict
from .load import Input


def part(inp: Input) -> Part:
    data = inp.data
    checks = [c for c in data["checks"] if isinstance(c, dict)]
    failed = [c for c in checks if not c.get("ok")]
    status = FAIL if failed or data.get("ok") is False else OK
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    out = Part(facts=[(k, str(meta[k])) for k in ("gradguard", "torch", "python") if meta.get(k)]
               + ([("gate date", str(meta["date"]))] if meta.get("date") else []))
    out.cards.append(Card("Regression gate", "passed" if status == OK else f"{len(failed)} failed",
                          f"{len(checks) - len(failed)}/{len(checks)} checks pass", status))
    out.headline.append(("gate passed" if status == OK else f"gate FAILED ({plural(len(failed), 'check')})", status))

    table = Table(["check", "kind", "result", "detail", "baseline", "current", "change", "p-value"], [],
                  caption=f"{plural(len(checks), 'check')}, failures first")
    for c in sorted(checks, key=lambda c: bool(c.get("ok"))):
        ok = bool(c.get("ok"))
        base, cur = finite(c.get("baseline_median")), finite(c.get("current_median"))
        change = finite(c.get("ratio_change"))
        if change is None and base and cur is not None:
            change = cur / base
        table.add([c.get("name", "?"), c.get("kind", ""), verdict(ok), c.get("detail", ""),
                   Cell(fmt_num(base, 4) if base is not None else "", numeric=True),
                   Cell(fmt_num(cur, 4) if cur is not None else "", numeric=True),
                   Cell(fmt_times(change) if change is not None else "", None if ok else FAIL, numeric=True),
                   Cell(fmt_num(c.get("p_value")) if finite(c.get("p_value")) is not None else "", numeric=True)],
                  None if ok else FAIL)
    table.drop_empty_columns(keep=4)
    out.sections.append(Section("Regression gate", "gate", [_about(inp), table], status))
    return out


def _about(inp: Input) -> str:
    data = inp.data
    text = f"{inp.path.name} ({inp.schema})"
    if data.get("config") or data.get("baseline"):
        text += f": config {data.get('config', '?')}, baseline {data.get('baseline', '?')}"
    policy = data.get("policy") if isinstance(data.get("policy"), dict) else {}
    if policy:
        text += (f". A benchmark regresses when it is more than {fmt_num(policy.get('max_slowdown'))}× slower than "
                 f"the baseline and a one-sided Mann-Whitney test gives p < {fmt_num(policy.get('alpha'))}"
                 + (f" (metric: {policy['metric']}, {policy.get('reps', '?')} repetitions)" if policy.get("metric")
                    else ""))
    if data.get("baseline_written"):
        text += ". This run recorded a new baseline"
    if data.get("why"):
        text += f". {data['why']}"
    return text + "."
