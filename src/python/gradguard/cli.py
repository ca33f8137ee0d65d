"""The ``gradguard`` command. Exit codes: 0 all good, 1 problems found, 2 usage or input error."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .setup_file import load_setup

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2

CHECK_FILE_FORM = """\
The file is run as a Python script and must define a function setup() that returns a dict:
    model      the torch.nn.Module to check (required)
    inputs     a tuple of positional inputs for model(...)        (optional, default ())
    kwargs     a dict of keyword inputs for model(...)            (optional, default {})
    loss_fn    a function output -> scalar loss                   (optional: output.loss, else mean of squares)
    optimizer  the optimizer that will train the model            (optional: enables not_in_optimizer checks)
Example:
    def setup():
        model = get_peft_model(tiny_llama(), LoraConfig(target_modules=["q_proj"]))
        return {"model": model, "kwargs": {"input_ids": ids, "labels": ids}}"""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; this keeps the message on one clear line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"gradguard: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _hp_pairs(pairs: list[str]) -> dict:
    hp = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ValueError(f"argument '--hp': expected KEY=VALUE, got '{p}'")
        low = value.lower()
        if low in ("true", "false"):
            hp[key] = low == "true"
        else:
            try:
                hp[key] = int(value)
            except ValueError:
                try:
                    hp[key] = float(value)
                except ValueError:
                    raise ValueError(f"argument '--hp {key}': expected a number or true/false, got '{value}'") from None
    return hp


def _emit(obj, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2) if as_json else text)


def cmd_adapters(args) -> int:
    import gradguard as gg

    if args.json:
        print(json.dumps([gg.info(n) for n in gg.adapters()], indent=2))
    else:
        for n in gg.adapters():
            print(f"{n:12s} {gg.info(n)['summary']}")
    return EXIT_OK


def cmd_gradcheck(args) -> int:
    import gradguard as gg
    from gradguard.registry import check_hp

    # As `compare`: hyper-parameters not given take the check values for this shape (rank 4 at most, and the block
    # sizes that tile d_in and d_out), since PEFT's defaults (GraLoRA's r = 32, C3A's block_size = 256) do not fit
    # the small layers a finite-difference check runs on.
    gg.info(args.adapter)  # an unknown name fails here, naming the argument
    if args.d_in < 1 or args.d_out < 1:
        raise gg.InputError(f"argument 'd_in'/'d_out': expected positive integers, got {args.d_in} x {args.d_out}")
    hp = check_hp(args.adapter, args.d_in, args.d_out, _hp_pairs(args.hp), min(4, args.d_in, args.d_out))
    res = gg.gradcheck(args.adapter, d_in=args.d_in, d_out=args.d_out, backend=args.backend, mode=args.mode,
                       seed=args.seed, n_rows=args.rows, four_point=args.four_point, **hp)
    _emit(res.to_json(), args.json, str(res))
    return EXIT_OK if res.ok else EXIT_PROBLEMS


def cmd_compare(args) -> int:
    import gradguard as gg

    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    res = gg.compare(args.adapter, backends=backends, d_in=args.d_in, d_out=args.d_out, n_rows=args.rows,
                     seed=args.seed, **_hp_pairs(args.hp))
    _emit(res.to_json(), args.json, str(res))
    return EXIT_OK if res.ok else EXIT_PROBLEMS


def cmd_check(args) -> int:
    import gradguard as gg

    spec = load_setup(args.file, {"model"}, {"inputs", "kwargs", "loss_fn", "optimizer"})
    report = gg.check(spec["model"], *spec.get("inputs", ()), loss_fn=spec.get("loss_fn"),
                      optimizer=spec.get("optimizer"), **spec.get("kwargs", {}))
    _emit(report.to_json(), args.json, str(report))
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_audit(args) -> int:
    from .audit import print_summary, run_audit, write_reports

    names = [n.strip() for n in args.adapters.split(",")] if args.adapters else None
    report = run_audit(names, quiet=args.json)
    json_path, md_path = write_reports(report, args.out)
    if args.json:
        print(json_path.read_text())
    else:
        print_summary(report)
        print(f"reports: {json_path}  {md_path}")
    return EXIT_OK if report["ok"] else EXIT_PROBLEMS


def cmd_audit_peft(args) -> int:
    from .atomic import write_json, write_text
    from .audit_peft import audit_peft

    def split(v):
        return [n.strip() for n in v.split(",") if n.strip()] if v else None
    report = audit_peft(split(args.tuners), split(args.layers), quiet=args.json)
    out = Path(args.out)
    write_json(out / "audit-peft.json", report.to_json())
    write_text(out / "audit-peft.md", report.to_markdown())
    _emit(report.to_json(), args.json, str(report) + f"\nreports: {out / 'audit-peft.json'}  {out / 'audit-peft.md'}")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_report(args) -> int:
    from .report import ReportInputError, build_report

    try:
        md, html = build_report(args.inputs, args.out, title=args.title)
    except ReportInputError as e:
        raise ValueError(str(e)) from None
    print(f"reports: {md}  {html}")
    return EXIT_OK


def cmd_gate(args) -> int:
    from .atomic import write_json
    from .gate import load_config, render, run_gate, write_junit

    for flag, target in (("--junit", args.junit), ("--out", args.out)):  # before minutes of work, not after
        if target and Path(target).is_dir():
            raise ValueError(f"argument '{flag}': expected a file path, got the folder '{target}'")
    code, result = run_gate(load_config(args.config), update_baseline=args.update_baseline, quiet=args.json)
    _emit(result, args.json, render(result))
    if args.junit:
        write_junit(args.junit, result)
    if args.out:
        write_json(args.out, result)
    return code


def cmd_new_adapter(args) -> int:
    from .scaffold import new_adapter

    result = new_adapter(args.name, args.param, repo=args.repo, peft_fork=args.peft_fork, dry_run=args.dry_run)
    text = result.render(Path(args.repo).resolve())
    print(("dry run, nothing written: " if args.dry_run else "") + text)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gradguard", description="Prove parameter-efficient fine-tuning adapters correct and fast.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    a = sub.add_parser("audit", help="gradcheck x backends, numerics vs PEFT, gradient flow in a tiny Llama; writes reports")
    a.add_argument("--out", default="reports/latest", help="report folder (default: reports/latest)")
    a.add_argument("--adapters", help="comma-separated subset of the registry (default: all)")
    a.add_argument("--json", action="store_true", help="print report.json instead of the summary table")
    a.set_defaults(func=cmd_audit)

    ap_ = sub.add_parser("audit-peft", help="gradguard's checkers on every tuner of the installed PEFT x layer type")
    ap_.add_argument("--tuners", help="comma-separated PEFT types, e.g. LORA,LOKR (default: all)")
    ap_.add_argument("--layers", help="comma-separated layer types: Linear,Conv1d,Conv2d,Embedding,Conv1D (default: all)")
    ap_.add_argument("--out", default="reports/latest", help="report folder (default: reports/latest)")
    ap_.add_argument("--json", action="store_true", help="print the JSON report instead of the summary table")
    ap_.set_defaults(func=cmd_audit_peft)

    g = sub.add_parser("gradcheck", help="finite differences (float64) against one adapter's analytic backward")
    g.add_argument("adapter")
    # 16 fits every adapter's default rank (AdaLoRA's init_r is 12) while the full Jacobian stays small.
    g.add_argument("--d-in", type=int, default=16)
    g.add_argument("--d-out", type=int, default=16)
    g.add_argument("--rows", type=int, default=3, help="N, the number of input rows")
    g.add_argument("--backend", default="eigen", choices=["eigen", "torch", "cuda"])
    g.add_argument("--mode", default="fast", choices=["fast", "full"])
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--four-point", action="store_true", help="4-point stencil instead of central differences")
    g.add_argument("--hp", nargs="*", metavar="KEY=VALUE",
                   help="hyper-parameters, e.g. r=4 lora_alpha=16 use_rslora=true (not given: rank <= 4 and the block "
                        "sizes that fit the shape)")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_gradcheck)

    c = sub.add_parser("compare", help="eigen float64 reference vs eigen/torch float64/float32 vs PEFT's layer")
    c.add_argument("adapter")
    c.add_argument("--backends", default="eigen,torch,cuda,peft")
    c.add_argument("--d-in", type=int, default=None, help="default 11")
    c.add_argument("--d-out", type=int, default=None, help="default 7, or the nearest the adapter takes (RoAd: 8)")
    c.add_argument("--rows", type=int, default=5)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--hp", nargs="*", metavar="KEY=VALUE")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)

    k = sub.add_parser("check", help="gradient flow of a model defined in a Python file",
                       description=CHECK_FILE_FORM, formatter_class=argparse.RawDescriptionHelpFormatter)
    k.add_argument("file")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_check)

    # listed for --help; main() hands `bench ...` to the benchmark's own parser before this one runs
    sub.add_parser("bench", help="time gradguard's torch backend, PEFT's layers and the base layer (CPU); "
                                 "gradguard bench --help")

    rp = sub.add_parser("report", help="JSON results (bench, audit, audit-peft, gate, GPU) -> Markdown + one HTML file")
    rp.add_argument("inputs", nargs="+", help="JSON files written by bench, audit, audit-peft, gate or the GPU check")
    # not reports/latest itself: `gradguard audit` writes its own report.md there
    rp.add_argument("--out", default="reports/latest/summary", help="folder for report.md and report.html "
                                                                    "(default: reports/latest/summary)")
    rp.add_argument("--title", default="gradguard report")
    rp.set_defaults(func=cmd_report)

    from .gate import CONFIG_FORM

    gt = sub.add_parser("gate", help="correctness checks + benchmarks against a committed baseline (CI regression gate)",
                        description=CONFIG_FORM, formatter_class=argparse.RawDescriptionHelpFormatter)
    gt.add_argument("config", help="the gate config (TOML or JSON)")
    gt.add_argument("--update-baseline", action="store_true",
                    help="record the benchmarks as the new baseline (only when every correctness check passes)")
    gt.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report")
    gt.add_argument("--out", metavar="FILE", help="also write the result JSON")
    gt.add_argument("--json", action="store_true", help="print the result JSON (no progress line)")
    gt.set_defaults(func=cmd_gate)

    from .scaffold.spec import __doc__ as spec_doc

    na = sub.add_parser("new-adapter", help="scaffold a new adapter: C++ folder + registry line + PEFT-side package",
                        description="Scaffold a new adapter in a gradguard checkout: src/adapters/NAME/ (registry "
                                    "entry; Eigen, torch and CUDA\nstubs), its line in src/adapters/registry.list and "
                                    "the PEFT side in src/python/gradguard/peft/NAME/;\nnever overwrites.\n\n"
                                    + spec_doc.split("\n\n", 1)[1],
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    na.add_argument("name", metavar="NAME", help="snake_case adapter name, e.g. my_new_lora")
    na.add_argument("--param", action="append", metavar="NAME:SHAPE:INIT",
                    help="a trainable tensor, repeated per tensor (default: lora_A:r,d_in:kaiming lora_B:d_out,r:zeros)")
    na.add_argument("--repo", default=".", help="the gradguard checkout to write into (default: .)")
    na.add_argument("--peft-fork", metavar="PATH", help="also add the tuner to this PEFT source checkout")
    na.add_argument("--dry-run", action="store_true", help="list what would be written; write nothing")
    na.set_defaults(func=cmd_new_adapter)

    r = sub.add_parser("adapters", help="list the registry")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_adapters)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # every option belongs to the benchmark's own parser (--help included)
        from . import bench_peft

        return _usage_errors(lambda: bench_peft.main(argv[1:], prog="gradguard bench"))
    args = build_parser().parse_args(argv)
    # PEFT 0.21.2 reads a property transformers 5.x deprecated: noise in every report, not the user's problem.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    return _usage_errors(lambda: args.func(args))


def _usage_errors(run) -> int:
    """Bad input is exit 2 with one line naming it: gradguard.InputError (a ValueError), a missing file, a file that
    cannot be read or written, an unsupported combination."""
    try:
        return run()
    except (ValueError, OSError, NotImplementedError) as e:
        print(f"gradguard: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
