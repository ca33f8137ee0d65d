"""The gradient-flow report: the kind/cause vocabulary of DESIGN.md §3 and the result types of ``gradguard.check``
(Problem, Note, FlowReport), separate from the analysis in ``gradguard.flow`` that produces them."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

KINDS = ("none", "zero", "nonfinite", "frozen_adapter", "not_in_optimizer")
CAUSES = (
    "forward_bypassed",
    "ran_without_grad",
    "detached_or_unused",
    "function_returned_none",
    "zero_init_factor",
    "always_zero",
    "nonfinite_backward",
    "frozen_by_caller",
    "optimizer_missing",
)


@dataclass
class Problem:
    """One parameter that will not train as intended."""

    param: str
    module: str
    kind: str
    cause: str
    hint: str
    node: str | None = None  # backward node named by the cause (function_returned_none, nonfinite_backward)
    path: list[str] | None = None  # autograd path loss.grad_fn -> ... -> AccumulateGrad, when reachable

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Note:
    """Something that looks wrong on step 0 but is expected (e.g. LoRA's A has a zero gradient while B = 0)."""

    param: str
    module: str
    kind: str
    cause: str
    detail: str

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class FlowReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # every parameter classified (trainable or frozen adapter)
    loss: float | None = None
    loss_requires_grad: bool = True
    messages: list[str] = field(default_factory=list)  # report-level remarks (e.g. the loss does not require grad)

    @property
    def ok(self) -> bool:
        return not self.problems and self.loss_requires_grad

    def by_param(self) -> dict[str, Problem]:
        return {p.param: p for p in self.problems}

    def to_json(self) -> dict:
        loss = self.loss
        if loss is not None and not math.isfinite(loss):
            loss = str(loss)  # JSON has no NaN/Inf
        return {
            "ok": self.ok,
            "loss": loss,
            "loss_requires_grad": self.loss_requires_grad,
            "checked": len(self.checked),
            "messages": list(self.messages),
            "problems": [p.to_json() for p in self.problems],
            "notes": [n.to_json() for n in self.notes],
        }

    def __str__(self) -> str:
        head = (
            f"gradguard check: {'OK' if self.ok else 'PROBLEMS'} - {len(self.checked)} parameters checked, "
            f"{len(self.problems)} problem(s), {len(self.notes)} note(s), loss={self.loss}"
        )
        lines = [head]
        lines += [f"  ! {m}" for m in self.messages]
        if self.problems:
            lines.append(_table(["kind", "cause", "param", "module", "hint"],
                                [[p.kind, p.cause, p.param, p.module, p.hint] for p in self.problems]))
        if self.notes:
            lines.append("notes:")
            lines.append(_table(["kind", "cause", "param", "detail"],
                                [[n.kind, n.cause, n.param, n.detail] for n in self.notes]))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"FlowReport(ok={self.ok}, problems={len(self.problems)}, notes={len(self.notes)})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in header]
    for r in rows:
        for i, c in enumerate(r[:-1]):  # the last column (hint/detail) is free-width
            widths[i] = max(widths[i], len(str(c)))
    def fmt(r):
        return "  " + " | ".join(str(c).ljust(widths[i]) if i < len(r) - 1 else str(c) for i, c in enumerate(r))
    sep = "  " + "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(header), sep] + [fmt(r) for r in rows])
