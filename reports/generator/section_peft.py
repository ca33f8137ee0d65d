"""`gradguard audit-peft` (src/python/gradguard/audit_peft.py): gradguard's checkers pointed at the installed PEFT.
A finding PEFT documents, or a defect gradguard has confirmed with a regression test, carries its explanation in
`known`; one without is new and needs a human, so it comes first and in red."""
from __future__ import annotations

from collections import defaultdict

from .document import FAIL, MUTED, OK, WARN, Card, Cell, Code, Group, Part, Section, Table, fmt_num, plural
from .load import Input

UNEXPLAINED = "UNEXPLAINED"


def _label(known: str) -> str:
    """The kind of an explanation, from its opening words ("confirmed PEFT defect", "documented", "deliberate")."""
    head = known.replace(",", ":").split(":", 1)[0].strip()
    return head if len(head) <= 40 else "explained (registry note)"


def part(inp: Input) -> Part:
    data = inp.data
    findings = [f for f in data["findings"] if isinstance(f, dict)]
    unconfirmed = [u for u in data.get("unconfirmed") or [] if isinstance(u, dict)]
    skipped = [s for s in data.get("skipped") or [] if isinstance(s, dict)]
    audited = data.get("audited") or []
    version = str(data.get("peft_version", "?"))
    unexplained = [f for f in findings if not f.get("known")]
    # explained findings are PEFT's known defects, not something to act on here: neutral, not amber
    status = FAIL if unexplained else (WARN if unconfirmed else (None if findings else OK))

    out = Part(facts=[("peft (audit-peft)", version)])
    note = f"{len(unexplained)} unexplained · PEFT {version}" if findings else f"PEFT {version}"
    out.cards.append(Card("PEFT findings", str(len(findings)), note, status))
    out.headline.append((f"{plural(len(findings), 'PEFT finding')}"
                         + (f" ({len(unexplained)} unexplained)" if unexplained else " (all explained)" if findings
                            else ""), FAIL if unexplained else None))

    blocks: list = [f"{plural(len(audited), 'tuner × layer × configuration combination')} of PEFT {version} audited"
                    f" (gradcheck, merge identities, gradient flow, numerics against gradguard's reference): "
                    f"{plural(len(findings), 'confirmed finding')}, {len(unexplained)} without an explanation, "
                    f"{len(unconfirmed)} unconfirmed, {len(skipped)} skipped."]
    if findings:
        explanations = _explanations(findings)
        blocks.append(_explanation_table(explanations))
        blocks.append(_findings_table(findings, explanations))
    for f in unexplained:
        blocks.append(Group(f"Repro: {f.get('tuner')} / {f.get('layer')} — {f.get('check')} {f.get('tensor')}",
                            [str(f.get("detail", "")), Code(str(f.get("repro", "")))], FAIL, open=True))
    if unconfirmed:
        t = Table(["tuner", "layer", "check", "tensor", "detail"], [],
                  caption="Unconfirmed failures (a first check failed, the confirming check did not)")
        for u in unconfirmed:
            t.add([u.get("tuner"), u.get("layer"), u.get("check"), u.get("tensor", ""), u.get("detail", "")], WARN)
        blocks.append(t)
    if skipped:
        blocks.append(_skipped_table(skipped))
    out.sections.append(Section(f"PEFT {version} audit", "peft-audit", blocks, status))
    return out


def _explanations(findings: list[dict]) -> dict[str, str]:
    """Each distinct explanation gets a short id (E1, E2, ...), unexplained first, so the long text is written once."""
    texts = sorted({str(f.get("known") or "") for f in findings}, key=lambda k: (k != "", k))
    return {k: ("?" if not k else f"E{i + (0 if '' in texts else 1)}") for i, k in enumerate(texts)}


def _explanation_table(explanations: dict[str, str]) -> Table:
    t = Table(["id", "explanation", "kind"], [], caption="Why the findings are expected")
    for text, ident in explanations.items():
        if text:
            t.add([ident, text, _label(text)])
        else:
            t.add(["?", Cell("no explanation: a new finding, see the repro below", FAIL), Cell(UNEXPLAINED, FAIL)],
                  FAIL)
    return t


def _findings_table(findings: list[dict], explanations: dict[str, str]) -> Table:
    t = Table(["tuner", "layer", "check", "tensor", "max abs err", "known?", "detail"], [],
              caption=f"All {plural(len(findings), 'finding')}", collapsed=len(findings) > 30)
    for f in sorted(findings, key=lambda f: (bool(f.get("known")), f.get("tuner", ""), f.get("layer", ""))):
        known = str(f.get("known") or "")
        mark = Cell(f"{explanations[known]} {_label(known)}") if known else Cell(UNEXPLAINED, FAIL)
        t.add([f.get("tuner"), f.get("layer"), f.get("check"), f.get("tensor"), fmt_num(f.get("max_abs_err")), mark,
               f.get("detail", "")], None if known else FAIL)
    return t


def _skipped_table(skipped: list[dict]) -> Table:
    by_reason: dict[str, list[str]] = defaultdict(list)
    for s in skipped:
        by_reason[str(s.get("reason", ""))].append(f"{s.get('tuner')}/{s.get('layer', '*')}")
    t = Table(["reason", "tuner / layer"], [], caption=f"Skipped ({len(skipped)}; PEFT has no such layer or config)",
              collapsed=True)
    for reason, who in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        t.add([reason, Cell(", ".join(dict.fromkeys(who)), MUTED)], MUTED)
    return t
