"""`gradguard audit` (src/python/gradguard/audit.py): per adapter, gradchecks of every backend and mode, numerics of
every backend and dtype against the float64 reference, and gradient flow through PEFT in a tiny Llama."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from . import plots
from .document import (FAIL, MUTED, OK, Card, Cell, Figure, Group, Part, Section, Table, finite, fmt_num,
                       fmt_pct, plural, verdict)
from .load import Input

BACKEND_ORDER = ("eigen", "torch", "cuda", "peft")
DTYPE_ORDER = ("float64", "float32", "bfloat16", "float16", "*")
REFERENCE = ("eigen", "float64")  # compare's oracle: its own row is zero by construction


def _budget(v) -> float:
    """A budget as written (a fraction, 1 = the whole tolerance); null means an error was NaN/Inf."""
    f = finite(v)
    return math.inf if f is None else f


def _budget_pct(v) -> str:
    b = _budget(v)
    return fmt_pct(b) if math.isfinite(b) else "NaN/Inf"


def part(inp: Input) -> Part:
    audit = inp.data
    adapters = [a for a in audit["adapters"] if isinstance(a, dict)]
    out = Part(facts=[(k, str(v)) for k, v in (audit.get("versions") or {}).items()])
    if finite(audit.get("seconds")) is not None:
        out.facts.append(("audit run", f"{audit['seconds']:.0f} s"))
    names = [a.get("adapter", "?") for a in adapters]
    shown = ", ".join(names[:6]) + (" …" if len(names) > 6 else "")
    out.cards.append(Card("Adapters audited", str(len(adapters)), shown))
    out.headline.append((plural(len(adapters), "adapter"), None))
    _gradcheck(adapters, audit.get("policy") or {}, out)
    _numerics(adapters, out)
    _flow(adapters, out)
    return out


# -- gradcheck -------------------------------------------------------------------------------------------------------

def _gradcheck(adapters: list[dict], policy: dict, out: Part) -> None:
    runs = [(a.get("adapter", "?"), g) for a in adapters for g in a.get("gradcheck") or []]
    failed = [(name, g) for name, g in runs if not g.get("ok")]
    status = FAIL if failed else OK
    out.cards.append(Card("Gradchecks passed", f"{len(runs) - len(failed)}/{len(runs)}",
                          "finite differences in float64", status))
    out.headline.append(("all gradchecks pass" if not failed else f"{len(failed)} of {len(runs)} gradchecks FAIL",
                         status))
    combos = list(dict.fromkeys((g.get("backend", "?"), g.get("mode", "?")) for _, g in runs))
    matrix = Table(["adapter"] + [f"{b} · {m}" for b, m in combos] + ["worst budget", "status"], [],
                   caption="Passed / run per backend and mode (every shape and flag variant); budget = worst "
                           "|analytic − numeric| / allowed, 100% = the tolerance.")
    for a in adapters:
        grads = a.get("gradcheck") or []
        row: list[object] = [a.get("adapter", "?")]
        for combo in combos:
            mine = [g for g in grads if (g.get("backend", "?"), g.get("mode", "?")) == combo]
            passed = sum(bool(g.get("ok")) for g in mine)
            row.append(Cell(f"{passed}/{len(mine)}" + ("" if passed == len(mine) else " FAIL"),
                            MUTED if not mine else (OK if passed == len(mine) else FAIL)))
        worst = max((_budget(g.get("worst_budget")) for g in grads), default=None)
        ok = all(g.get("ok") for g in grads) if grads else None
        row += [Cell(_budget_pct(worst) if grads else "–", None if ok is not False else FAIL, numeric=True),
                verdict(ok, unknown="not run")]
        matrix.add(row, None if ok is not False else FAIL)
    blocks: list = [_policy_text(policy), matrix]
    if failed:
        blocks.append(_failed_gradchecks(failed))
    out.sections.append(Section("Gradcheck", "gradcheck", blocks, status))


def _policy_text(policy: dict) -> str:
    if not policy:
        return "Each backend's analytic backward against central finite differences in float64."
    return (f"Each backend's analytic backward against central finite differences in float64 (eps "
            f"{fmt_num(policy.get('fd_eps'))}, atol {fmt_num(policy.get('fd_atol'))}, rtol "
            f"{fmt_num(policy.get('fd_rtol'))}); fast mode checks random projections vᵀJu, full mode the whole "
            "Jacobian.")


def _failed_gradchecks(failed: list[tuple[str, dict]]) -> Table:
    t = Table(["adapter", "backend", "mode", "shape", "variant", "failing tensors", "budget"], [],
              caption="Failing gradchecks")
    for name, g in failed:
        tensors = (g.get("result") or {}).get("tensors") or []
        failing = [f"{x.get('name')} (abs err {fmt_num(x.get('max_abs_err'))}, {_budget_pct(x.get('budget_used'))})"
                   for x in tensors if not x.get("ok")] or [str(n) for n in g.get("failing") or []]
        t.add([name, g.get("backend"), g.get("mode"), g.get("shape"), g.get("variant"), "; ".join(failing) or "?",
               Cell(_budget_pct(g.get("worst_budget")), FAIL)], FAIL)
    return t


# -- numerics (compare) ----------------------------------------------------------------------------------------------

def _column(backend: str, dtype: str) -> str:
    return f"{backend} · {'all dtypes' if dtype == '*' else dtype}"


def _column_key(col: tuple[str, str]) -> tuple:
    b, d = col
    return (BACKEND_ORDER.index(b) if b in BACKEND_ORDER else len(BACKEND_ORDER), b,
            DTYPE_ORDER.index(d) if d in DTYPE_ORDER else len(DTYPE_ORDER), d)


@dataclass
class _Compared:
    """Every compare row of the audit, gathered for the heatmap and the tables."""
    cells: dict = field(default_factory=dict)  # (adapter, column) -> worst % of budget, or plots.SKIPPED
    cols: set = field(default_factory=set)  # (backend, dtype)
    over: list = field(default_factory=list)  # (adapter, variant, row) over budget
    total: int = 0
    skipped: dict = field(default_factory=lambda: defaultdict(list))  # (backend, dtype, reason) -> [(adapter, variant)]
    notes: list = field(default_factory=list)


def _collect(adapters: list[dict]) -> _Compared:
    got = _Compared()
    ran: set[tuple[str, str]] = set()  # (adapter, backend) with at least one compared row
    for a in adapters:
        name = a.get("adapter", "?")
        for c in a.get("compare") or []:
            got.notes += [str(n) for n in c.get("notes") or []]
            for r in c.get("rows") or []:
                col = (r.get("backend", "?"), r.get("dtype", "?"))
                got.total += 1
                ran.add((name, col[0]))
                if not r.get("ok"):
                    got.over.append((name, c.get("variant", ""), r))
                if col == REFERENCE:
                    continue
                got.cols.add(col)
                key = (name, _column(*col))
                got.cells[key] = max(got.cells.get(key, 0.0), 100 * _budget(r.get("budget_used")))
            for s in c.get("skipped") or []:
                col = (s.get("backend", "?"), s.get("dtype", "*"))
                got.skipped[(*col, str(s.get("reason", "")))].append((name, str(c.get("variant", "default"))))
    for (backend, dtype, _), who in got.skipped.items():
        for name in dict.fromkeys(n for n, _ in who):
            if (name, backend) not in ran:  # skipped for one variant only (PEFT lacks DoRA's exact gradient): the
                got.cols.add((backend, dtype))   # other variants' numbers stand, the reason is in the table below
                got.cells[(name, _column(backend, dtype))] = plots.SKIPPED
    return got


def _numerics(adapters: list[dict], out: Part) -> None:
    got = _collect(adapters)
    cells, over, skipped, notes = got.cells, got.over, got.skipped, got.notes
    if not got.total:
        return
    status = FAIL if over else OK
    numbers = [v for v in cells.values() if isinstance(v, float)]
    worst = max(numbers, default=0.0)
    out.cards.append(Card("Numerics vs float64", "within budget" if not over else f"{len(over)} over budget",
                          f"worst {worst:.0f}% of the budget" if math.isfinite(worst) else "an error is NaN/Inf",
                          status))
    if over:
        out.headline.append((f"{plural(len(over), 'numerics comparison')} over budget", FAIL))
    columns = [_column(*c) for c in sorted(got.cols, key=_column_key)]
    names = [a.get("adapter", "?") for a in adapters]
    blocks: list = [
        "Every backend and dtype against the float64 Eigen reference (the reference's own column is left out); a "
        "low-precision run may use up to k × the error of a naive same-precision torch implementation + atol "
        "(DESIGN.md §4). Each cell is the worst tensor (y, dx, every parameter gradient) over every flag variant.",
        Figure("Error budget used, adapter × backend × dtype", "% of the tolerance budget used; red = over budget, "
               "grey = not run.", lambda: plots.error_budget(names, columns, cells))]
    if over:
        t = Table(["adapter", "variant", "backend", "dtype", "tensor", "max abs", "max rel", "budget", "NMSE"], [],
                  caption="Comparisons over budget")
        for name, variant, r in over:
            t.add([name, variant, r.get("backend"), r.get("dtype"), r.get("tensor"), fmt_num(r.get("max_abs")),
                   fmt_num(r.get("max_rel")), Cell(_budget_pct(r.get("budget_used")) + " FAIL", FAIL),
                   fmt_num(r.get("nmse"))], FAIL)
        blocks.append(t)
    if skipped:
        t = Table(["backend", "dtype", "reason", "adapters (variant)"], [], caption=(
            f"Not compared: {plural(len(skipped), 'reason')} (an unsupported combination is reported, never hidden)"),
            collapsed=True)
        for (backend, dtype, reason), who in sorted(skipped.items()):
            t.add([backend, dtype, reason, Cell(f"{len(who)}: " + ", ".join(f"{n} ({v})" for n, v in who), MUTED)],
                  MUTED)
        blocks.append(t)
    if notes:
        blocks.append(Group(f"Notes from compare ({len(set(notes))})", [n for n in dict.fromkeys(notes)]))
    out.sections.append(Section("Numerics against the float64 reference", "numerics", blocks, status))


# -- gradient flow ---------------------------------------------------------------------------------------------------

def _flow(adapters: list[dict], out: Part) -> None:
    table = Table(["adapter", "variants run", "problems", "expected zeros (notes)", "not run", "status"], [],
                  caption="One forward and backward at PEFT's default init, every linear layer of a tiny random "
                          "Llama adapted; a parameter that should train but gets no usable gradient is a problem.")
    problems = Table(["adapter", "variant", "parameter", "kind", "cause", "hint"], [], caption="Flow problems")
    n_problems = 0
    for a in adapters:
        flow = a.get("flow") or {}
        variants = flow.get("variants") or []
        ran = [v for v in variants if v.get("ok") is not None]
        not_run = [f"{v.get('variant')}: {v.get('skipped')}" for v in variants if v.get("ok") is None]
        if flow.get("skipped"):
            not_run.insert(0, str(flow["skipped"]))
        count = sum(int(finite(v.get("problems")) or 0) for v in ran)
        n_problems += count
        ok = flow.get("ok")
        table.add([a.get("adapter", "?"), len(ran), Cell(str(count), FAIL if count else None, numeric=True),
                   sum(int(finite(v.get("notes")) or 0) for v in ran),
                   Cell("; ".join(not_run), MUTED) if not_run else "",
                   verdict(ok, unknown="not run")], FAIL if ok is False else (MUTED if ok is None else None))
        for v in ran:
            report = v.get("report") or {}
            for msg in report.get("messages") or []:
                problems.add([a.get("adapter", "?"), v.get("variant"), "(loss)", "message", "", str(msg)], FAIL)
            for p in report.get("problems") or []:
                problems.add([a.get("adapter", "?"), v.get("variant"), p.get("param"), p.get("kind"), p.get("cause"),
                              p.get("hint") or p.get("detail", "")], FAIL)
    if not table.rows:
        return
    status = FAIL if n_problems or any(s == FAIL for s in table.row_status) else OK
    out.cards.append(Card("Gradient-flow problems", str(n_problems), "tiny Llama through PEFT", status))
    out.headline.append((f"{plural(n_problems, 'flow problem')}", status if n_problems else OK))
    blocks: list = [table] + ([problems] if problems.rows else [])
    out.sections.append(Section("Gradient flow", "flow", blocks, status))

