"""``gradguard audit-peft`` / ``gg.audit_peft()``: gradguard's checkers pointed at the installed PEFT itself.

For every tuner PEFT registers (``PEFT_TYPE_TO_CONFIG_MAPPING``) × every layer type (Linear, Conv1d, Conv2d,
Embedding, HF's GPT-2 ``Conv1D``) × a few seeded configurations, PEFT's own adapter is injected around a small base
layer (``peft.inject_adapter_in_model``, every factor non-zero via the tuner's own init switch, dropout 0), then:

  gradcheck   ``gg.gradcheck_module`` in float64 over the input and every trainable parameter, fast and full;
  identities  merged forward == unmerged forward, unmerge restores the base weight, disabled adapter == base;
  flow        ``gg.check`` on the layer: every trainable parameter gets a finite, non-zero gradient;
  numerics    for tuners gradguard implements: PEFT's float64 output and gradients against gradguard's float64
              reference (``gg.compare``), at the strict float64 policy; on the other layer types the registry
              declares for the adapter, through the lowering to a Linear (``compare_live_layer``).

A failure becomes a *finding* only when a second, independent way confirms it (gradcheck: the full Jacobian again with
a 4-point stencil and a smaller step; identities and flow: a second seed; numerics: a second seed), so nothing
reported is finite-difference noise or a harness artefact. Unconfirmed failures are listed as such. Tuners or layer
types PEFT cannot build here (prompt-learning methods, missing packages, unsupported layer types) are listed as
skipped with PEFT's own reason — never silently absent.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from . import _C
from ._table import table
from .gradcheck import gradcheck_module
from .progress import Progress

# Layer types: (constructor, input maker). Small, with convolutions larger than the kernel and strided/padded.
def _conv1d_gpt2(out_features: int = 5):
    from transformers.pytorch_utils import Conv1D

    return Conv1D(out_features, 6)  # nf = out features, nx = in features


# (base layer, seeded input, the layer as source for repro snippets) per layer type
LAYERS = {
    # 6 -> 9: widths with a common factor 3, so block-structured tuners (C3A) run with blocks where B >= 3 matters
    "Linear": (lambda: nn.Linear(6, 9), lambda g: torch.randn(2, 6, generator=g), "nn.Linear(6, 9)"),
    "Conv1d": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=1), lambda g: torch.randn(2, 4, 7, generator=g),
               "nn.Conv1d(4, 6, 3, stride=2, padding=1)"),
    "Conv2d": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1), lambda g: torch.randn(1, 4, 5, 5, generator=g),
               "nn.Conv2d(4, 6, 3, stride=2, padding=1)"),
    # dilated kernels whose strided output sizes equal the undilated ones' (11 -> 3 either way), so a tuner that
    # drops the dilation computes silently wrong numbers instead of failing on a shape
    "Conv1d-dilated": (lambda: nn.Conv1d(4, 6, 3, stride=3, dilation=2), lambda g: torch.randn(2, 4, 11, generator=g),
                       "nn.Conv1d(4, 6, 3, stride=3, dilation=2)"),
    "Conv2d-dilated": (lambda: nn.Conv2d(4, 6, 3, stride=3, dilation=2),
                       lambda g: torch.randn(1, 4, 11, 11, generator=g), "nn.Conv2d(4, 6, 3, stride=3, dilation=2)"),
    "Conv3d": (lambda: nn.Conv3d(3, 4, (3, 2, 2), stride=(2, 1, 1), padding=(1, 0, 1)),
               lambda g: torch.randn(1, 3, 5, 4, 3, generator=g),
               "nn.Conv3d(3, 4, (3, 2, 2), stride=(2, 1, 1), padding=(1, 0, 1))"),
    # grouped (2 groups): tuners whose ΔW is a grouped weight, and those that read every input channel
    "Conv2d-groups": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
                      lambda g: torch.randn(1, 4, 5, 5, generator=g),
                      "nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)"),
    "Embedding": (lambda: nn.Embedding(11, 6), lambda g: torch.randint(0, 11, (2, 3), generator=g),
                  "nn.Embedding(11, 6)"),
    "Conv1D": (_conv1d_gpt2, lambda g: torch.randn(2, 6, generator=g), "transformers.pytorch_utils.Conv1D(5, 6)"),
    # LoRA wraps attention itself (in_proj and out_proj); the host runs it as self-attention
    # (small: each call merges and unmerges both projections, and torch's attention has a high fixed cost per call)
    "MultiheadAttention": (lambda: nn.MultiheadAttention(4, 2, batch_first=True),
                           lambda g: torch.randn(1, 2, 4, generator=g), "nn.MultiheadAttention(4, 2, batch_first=True)"),
}

# Tuners that cannot apply to a shared layer at all get their own (same input): RoAd pairs output rows, so its d_out
# must be even (9 is not).
TUNER_LAYERS: dict[tuple[str, str], tuple] = {
    ("ROAD", "Linear"): (lambda: nn.Linear(6, 12), LAYERS["Linear"][1], "nn.Linear(6, 12)"),
    # GraLoRA's gralora_k (3) must divide the output width too: GPT-2's Conv1D at 6 -> 6
    ("GRALORA", "Conv1D"): (lambda: _conv1d_gpt2(6), LAYERS["Conv1D"][1], "transformers.pytorch_utils.Conv1D(6, 6)"),
}


def _layer(tuner: str, layer_name: str) -> tuple:
    return TUNER_LAYERS.get((tuner, layer_name), LAYERS[layer_name])

# Non-default options worth auditing, per tuner (config field -> value); every tuner also runs its defaults.
VARIANTS: dict[str, list[dict]] = {
    "LORA": [{"use_dora": True}, {"use_rslora": True}],
    "IA3": [{"feedforward_modules": ["target"]}],
    # the Tucker form of a convolution's ΔW (core over the kernel axes); PEFT ignores it on 1x1 kernels and Linear
    "LOHA": [{"use_effective_conv2d": True}],
    "LOKR": [{"decompose_both": True}, {"use_effective_conv2d": True}],
    "OFT": [{"use_cayley_neumann": False}],
    "BOFT": [{"boft_n_butterfly_factor": 2}],
    "ROAD": [{"variant": "road_2"}, {"variant": "road_4"}],
    "WAVEFT": [{"use_idwt": False}],
}

# Per-tuner settings the small audit layers need (sizes that must divide the layer's dims, counts bounded by them);
# the tuner's defaults otherwise.
TUNER_OPTIONS: dict[str, dict] = {
    "BOFT": {"boft_block_size": 2},
    "OFT": {"oft_block_size": 0},  # the block size follows from r (PEFT takes one or the other)
    "C3A": {"block_size": 3},
    "FOURIERFT": {"n_frequency": 8},
    "WAVEFT": {"n_frequency": 8},
    "VBLORA": {"vector_length": 1, "num_vectors": 16},
    "ROAD": {"group_size": 4},
    "SUPERTUNING": {"sparsity": 0.5},
    # AdaLoraConfig refuses total_step=None (it paces the rank allocator only); init_r within the small layers' widths
    "ADALORA": {"total_step": 10, "init_r": 2, "target_r": 2},
    "GRALORA": {"gralora_k": 3, "r": 3},  # k must divide both widths of the 6 -> 9 layer, and r
    "TRAINABLE_TOKENS": {"token_indices": [1, 4, 7]},  # with none, PEFT's index buffer is an empty float tensor
    # init_weights=False leaves TinyLoRA's v as torch.empty memory (PEFT: "leave uninitialized"): garbage that made
    # its findings differ from run to run; "uniform" is its non-zero init
    "TINYLORA": {"init_weights": "uniform"},
}

# Tuners whose init refuses float64 (PSOFT's SVD init): injected into the float32 layer, the model cast afterwards.
_INIT_IN_FLOAT32 = ("PSOFT",)

# Config fields set for every tuner where they exist: a small rank, no dropout, and the init switch that makes
# every factor non-zero (so every gradient term is exercised).
_RANK_FIELDS = ("r",)
_INIT_FIELDS = ("init_lora_weights", "init_ia3_weights", "init_weights")



_FLOAT32_TUNERS = ("C3A", "FOURIERFT", "DEFT")  # layers that compute in float32 inside a float64 model

# Findings PEFT documents as deliberate, with the reason: still reported (the gradient is not the true one), marked.
KNOWN = [
    (lambda tuner, layer, variant, tensor, check: tuner == "LORA" and layer == "MultiheadAttention" and (
        "out_proj" in tensor or tensor == "merged == unmerged"),
     "confirmed PEFT defect: LoRA on nn.MultiheadAttention adds out_proj's update twice in its unmerged forward "
     "(merge() sets out_proj's weight to W + ΔW, then out_proj.merge() adds ΔW again in place), so the forward uses "
     "W + 2ΔW where the merged layer uses W + ΔW, and the gradient reaching out_proj's lora_A/lora_B is that of one "
     "copy, half the derivative of the forward; regression test "
     "tests/python/test_peft_defects.py::test_known_peft_defect_lora_mha_out_proj_twice"),
    (lambda tuner, layer, variant, tensor, check: tuner == "IA3" and tensor == "unmerge restores W",
     "documented: PEFT warns that (IA)^3's unmerge can be inaccurate (it divides by l + 1e-8)"),
    (lambda tuner, layer, variant, tensor, check: tuner == "OSF" and tensor == "unmerge restores W",
     "documented: PEFT's OSF warns that it does not support unmerging (the merge modifies W permanently)"),
    (lambda tuner, layer, variant, tensor, check: tuner in ("OFT", "ROAD") and tensor == "unmerge restores W",
     "confirmed PEFT precision defect: unmerge inverts the rotation in float32 (torch.linalg.inv(R.float())) even "
     "for float64 weights, regression test tests/python/test_peft_defects.py::test_known_peft_defect_oft_unmerge_float32"),
    (lambda tuner, layer, variant, tensor, check: tuner in _FLOAT32_TUNERS and (
        check == "precision" or tensor == "merged == unmerged"),
     "confirmed PEFT precision defect: the layer computes in float32 inside a float64 model (C3A casts x and the kernel, "
     "FourierFT builds ΔW from spectrum.float(), DeFT fixes compute_dtype = float32), so finite differences are "
     "rounding noise at small steps and merged differs from unmerged at ~1e-8; regression test "
     "tests/python/test_peft_defects.py::test_known_peft_defect_float32_compute"),
    (lambda tuner, layer, variant, tensor, check: tuner == "DEFT" and check == "gradcheck" and "deft_P" in tensor,
     "confirmed not a wrong gradient: PEFT's deft_P gradient equals float64 autograd of DeFT's formula to float32 "
     "precision; finite differences fail at every step because the float32 forward is noisy at small steps and "
     "relu(P) has a kink at 0 inside the larger ones (P ~ N(0, 0.02²)); regression test tests/python/"
     "test_peft_defects.py::test_known_peft_defect_float32_compute"),
    (lambda tuner, layer, variant, tensor, check: tuner == "TRAINABLE_TOKENS" and layer == "Linear"
     and tensor == "merged == unmerged",
     "confirmed PEFT defect: TrainableTokens on a Linear (a tied LM head) computes its unmerged forward as "
     "F.linear(x, W) without the base bias, which the merged layer keeps (harmless for bias-free LM heads); regression "
     "test tests/python/test_peft_defects.py::test_known_peft_defect_trainable_tokens_linear_drops_bias"),
    (lambda tuner, layer, variant, tensor, check: tuner == "LORA" and variant.get("use_dora") and "lora_" in tensor,
     "deliberate: PEFT's DoRA treats the weight norm as a constant (paper §4.3), so lora_A/lora_B get the gradient "
     "of that approximation; gradguard's dora offers both (exact_gradient)"),
]


def _known(tuner: str, variant: dict, tensor: str, kw: dict | None = None, layer: str = "", check: str = "") -> str:
    why = next((why for match, why in KNOWN if match(tuner, layer, variant, tensor, check)), "")
    return why or _registry_defect(tuner, tensor, kw or {})


def _registry_defect(tuner: str, tensor: str, kw: dict) -> str:
    """A PEFT defect gradguard's registry already records (with its regression test), matched on the gradient it
    affects — the layer input's, or a parameter's whose PEFT name (``target.<registry name>.<adapter>``) holds the
    registry tensor's name — and only where the registry says it applies: the audited config's values of the
    adapter's hyper-parameters, registry defaults for the rest."""
    from .peft_defects import known_peft_defect, known_peft_defects
    from .registry import info

    parts = set(tensor.split("."))
    for d in known_peft_defects():
        entry = info(d["adapter"])
        if entry["peft_type"] != tuner:
            continue
        affected = d["tensor"] == "dx" and tensor in ("x", "input[0]") or (
            d["tensor"].startswith("d ") and d["tensor"][2:] in parts)
        hp = {h["name"]: kw.get(h["name"], h["default"]) for h in entry["hyper"]}
        if affected and known_peft_defect(d["adapter"], d["tensor"], hp):
            return f"confirmed PEFT defect, regression test {d['regression_test']}: {d['reason']}"
    return ""


@dataclass
class Finding:
    tuner: str
    layer: str
    check: str
    tensor: str
    max_abs_err: float
    detail: str
    repro: str
    confirmed_by: str
    known: str = ""  # why it is expected: documented by PEFT, or a confirmed PEFT defect with its regression test

    def to_json(self) -> dict:
        out = self.__dict__.copy()
        if not math.isfinite(out["max_abs_err"]):  # a flow finding has no error size; JSON has no NaN
            out["max_abs_err"] = None
        return out


@dataclass
class AuditPeftReport:
    peft_version: str
    findings: list[Finding] = field(default_factory=list)
    unconfirmed: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)   # tuner, layer, reason
    audited: list[dict] = field(default_factory=list)   # tuner, layer, variant, checks run
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict:
        return {"peft_version": self.peft_version, "ok": self.ok, "seconds": self.seconds,
                "findings": [f.to_json() for f in self.findings], "unconfirmed": self.unconfirmed,
                "skipped": self.skipped, "audited": self.audited}

    def to_markdown(self) -> str:
        lines = [f"# gradguard audit of PEFT {self.peft_version}", "",
                 f"{len(self.audited)} tuner × layer × configuration combinations audited in {self.seconds:.0f} s; "
                 f"{len(self.findings)} confirmed findings, {len(self.unconfirmed)} unconfirmed failures, "
                 f"{len(self.skipped)} skipped.", "", "## Findings", ""]
        if not self.findings:
            lines.append("none")
        for f in self.findings:
            lines += [f"### {f.tuner} / {f.layer}: {f.check} — {f.tensor}", "", f"{f.detail} (max abs err "
                      f"{f.max_abs_err:.3g}; confirmed by {f.confirmed_by})", "", "```python", f.repro, "```", ""]
        lines += ["", "## Skipped", "", "| tuner | layer | reason |", "|---|---|---|"]
        lines += [f"| {s['tuner']} | {s['layer']} | {s['reason']} |" for s in self.skipped]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        rows = [[f.tuner, f.layer, f.check, f.tensor, f"{f.max_abs_err:.3g}", f.detail[:70]] for f in self.findings]
        head = (f"audit-peft (peft {self.peft_version}): {len(self.audited)} audited, {len(self.findings)} findings, "
                f"{len(self.unconfirmed)} unconfirmed, {len(self.skipped)} skipped, {self.seconds:.0f} s")
        return head + ("\n" + table(["tuner", "layer", "check", "tensor", "max_abs", "detail"], rows) if rows else "")


class _Host(nn.Module):
    """The base layer under the name PEFT targets."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.target = layer

    def forward(self, x):
        base = self.target.get_base_layer() if hasattr(self.target, "get_base_layer") else self.target
        if isinstance(base, nn.MultiheadAttention):  # self-attention: query = key = value, the output without weights
            return self.target(x, x, x, need_weights=False)[0]
        return self.target(x)


def _tuners() -> dict[str, type]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return {str(getattr(k, "value", k)): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()}


def _config(cls: type, variant: dict, init_nonzero: bool = True, tuner: str = ""):
    fields = getattr(cls, "__dataclass_fields__", {})
    kw = {"target_modules": ["target"]}
    if "r" in fields:
        kw["r"] = 2
    for name, f in fields.items():
        if "dropout" in name and isinstance(f.default, float):
            kw[name] = 0.0
    if "feedforward_modules" in fields:
        kw["feedforward_modules"] = []  # IA3's output form; the feed-forward form is a variant
    if init_nonzero:
        for name in _INIT_FIELDS:
            if name in fields:
                kw[name] = False
                break
    kw.update(TUNER_OPTIONS.get(tuner, {}))
    kw.update(variant)
    return kw


def inject(config, host: nn.Module) -> nn.Module:
    """PEFT's adapter for ``config`` injected into ``host``; tuners with model-wide shared state (VeRA's projections,
    ...) refuse injection and need the PeftModel wrapper."""
    from peft import get_peft_model, inject_adapter_in_model

    try:
        return inject_adapter_in_model(config, host)
    except ValueError as e:
        if "get_peft_model" not in str(e):
            raise
        return get_peft_model(host, config)


def _build(tuner: str, cls: type, kw: dict, layer_name: str, seed: int):
    torch.manual_seed(seed)
    make_layer, make_input, _ = _layer(tuner, layer_name)
    host = _Host(make_layer())
    if tuner not in _INIT_IN_FLOAT32:
        host = host.double()
    base = copy.deepcopy(host).double()
    model = inject(cls(**kw), host)
    model.double().eval()  # stochastic training-mode paths (PVeRA's sampling, dropouts) off: checks need a function
    base.eval()
    x = make_input(torch.Generator().manual_seed(seed))
    if x.is_floating_point():
        x = x.double()
    return base, model, x


def _tuner_layer(model: nn.Module):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return next(m for m in model.modules() if isinstance(m, BaseTunerLayer))


def _repro(tuner: str, cls: type, kw: dict, layer_name: str, seed: int, check: str) -> str:
    layer_src = _layer(tuner, layer_name)[2]
    return "\n".join([
        "import torch, transformers; from torch import nn; import gradguard as gg",
        f"from peft import {cls.__name__}, inject_adapter_in_model",
        "from gradguard.audit_peft import _Host, LAYERS",
        f"torch.manual_seed({seed}); host = _Host({layer_src}).double()",
        f"model = inject_adapter_in_model({cls.__name__}(**{kw!r}), host).double()",
        f"x = LAYERS[{layer_name!r}][1](torch.Generator().manual_seed({seed}))",
        "x = x.double() if x.is_floating_point() else x",
        f"# check: {check}",
        {"gradcheck": "print(gg.gradcheck_module(model, x, mode='full'))",
         "numerics": "from gradguard.compare import compare_live_layer; print(compare_live_layer(model.target, x, "
                     "model=model))"}.get(check, "print(gg.check(model, x))"),
    ])


def _gradcheck(model, x) -> list[dict]:
    """Failing tensors after fast and full mode (empty when both pass)."""
    bad = {}
    for mode in ("fast", "full"):
        res = gradcheck_module(model, x, mode=mode)
        for t in res.failing():
            bad.setdefault(t["name"], {**t, "mode": mode})
    return list(bad.values())


def _confirm_gradcheck(model, x, name: str) -> bool:
    # A second way: the full Jacobian with the 4-point stencil and a 10x smaller step.
    res = gradcheck_module(model, x, mode="full", four_point=True, eps=1e-7)
    return any(t["name"] == name and not t["ok"] for t in res.tensors)


_COARSE_STEPS = (1e-4, 1e-3, 1e-2)


def _precision_not_gradient(model, x, name: str) -> tuple[float, float] | None:
    """A confirmed gradcheck failure is one of two things: a wrong analytic gradient, whose finite-difference error
    does not shrink with a larger step, or a forward computed below float64 precision (float32 inside a float64 layer),
    whose rounding noise falls as 1/eps. With steps 100x to 10000x larger (4-point stencil, so truncation stays
    negligible on smooth layers) the second passes. Returns (step, error) at the first step that passes (precision),
    None when every step fails (a wrong gradient)."""
    for eps in _COARSE_STEPS:
        res = gradcheck_module(model, x, mode="full", four_point=True, eps=eps)
        t = next((t for t in res.tensors if t["name"] == name), None)
        if t is not None and t["ok"]:
            return eps, t["max_abs_err"]
    return None


def _identities(base, model, x) -> list[tuple[str, float, str]]:
    """(identity, max abs err, detail) for each identity that fails."""
    out = []
    layer = _tuner_layer(model)
    tol = lambda ref: 1e-9 * max(1.0, float(ref.abs().max()))  # noqa: E731  (float64 policy, scaled)
    with torch.no_grad():
        y0 = base(x)
        y = model(x)
        w0 = layer.get_base_layer().weight.detach().clone()
        layer.enable_adapters(False)  # before any merge, so a merge defect cannot show up here too
        yd = model(x)
        layer.enable_adapters(True)
        if (yd - y0).abs().max() > tol(y0):
            out.append(("disabled == base", float((yd - y0).abs().max()), "the disabled adapter still changes output"))
        if not hasattr(layer, "merge"):
            return out
        layer.merge()
        ym = model(x)
        if (ym - y).abs().max() > tol(y):
            out.append(("merged == unmerged", float((ym - y).abs().max()), "merging changes the layer's output"))
        layer.unmerge()
        w1 = layer.get_base_layer().weight
        if (w1 - w0).abs().max() > tol(w0):
            out.append(("unmerge restores W", float((w1 - w0).abs().max()), "merge then unmerge does not restore W"))
    return out


def _flow(model, x) -> list[tuple[str, str]]:
    from .flow import check

    model.train(False)
    report = check(model, x, loss_fn=lambda out: (out.float() if isinstance(out, torch.Tensor) else out[0]).pow(2).mean())
    return [(p.param, f"{p.kind}: {p.cause}") for p in report.problems]


def audit_peft(tuners: list[str] | None = None, layers: list[str] | None = None, quiet: bool = True) -> AuditPeftReport:
    """Audit the installed PEFT (see the module docstring). ``tuners``: PEFT type names (e.g. ["LORA", "LOKR"]),
    default all; ``layers``: layer type names from LAYERS, default all; ``quiet=False`` shows a live progress line on
    a terminal."""
    import peft

    t0 = time.time()
    report = AuditPeftReport(peft.__version__)
    all_tuners = _tuners()
    for name in tuners or []:
        if name not in all_tuners:
            raise _C.InputError(f"argument 'tuners': expected names from {sorted(all_tuners)}, got '{name}'")
    for name in layers or []:
        if name not in LAYERS:
            raise _C.InputError(f"argument 'layers': expected names from {sorted(LAYERS)}, got '{name}'")
    names = tuners or sorted(all_tuners)
    progress = Progress(len(names), "audit-peft", quiet=quiet)
    for tname in names:
        cls = all_tuners[tname]
        progress.step(tname)
        try:
            if cls(**_config(cls, {}, tuner=tname)).is_prompt_learning:  # the audit's own settings (AdaLoRA's total_step)
                report.skipped.append({"tuner": tname, "layer": "*", "reason": "prompt-learning method: no layer to wrap"})
                continue
        except Exception as e:  # noqa: BLE001 — a config that cannot even be built is reported, not raised
            report.skipped.append({"tuner": tname, "layer": "*", "reason": f"config: {_first_line(e)}"})
            continue
        for lname in layers or list(LAYERS):
            for variant in [{}] + VARIANTS.get(tname, []):
                _audit_one(report, tname, cls, lname, variant)
        if layers is None or "Linear" in layers:
            _numerics(report, tname)
    progress.close(f"{len(names)} tuners, {len(report.findings)} findings")
    report.seconds = time.time() - t0
    return report


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:200]


def _audit_one(report: AuditPeftReport, tname: str, cls: type, lname: str, variant: dict) -> None:
    kw = _config(cls, variant, tuner=tname)
    seed = _SEEDS[0]
    try:
        base, model, x = _build(tname, cls, kw, lname, seed)
        model(x)
    except Exception as e:  # noqa: BLE001 — PEFT's own refusal, reported with its reason
        report.skipped.append({"tuner": tname, "layer": lname, "variant": variant, "reason": _first_line(e)})
        return
    entry = {"tuner": tname, "layer": lname, "variant": variant, "checks": []}
    report.audited.append(entry)

    defect = _layer_defect(model)

    def finding(check, tensor, err, detail, confirmed_by):
        # merged ≠ unmerged on a layer whose unmerged PEFT forward is a recorded defect (its merge right): that defect
        known = defect.reason if defect and defect.merged_is_right and tensor == "merged == unmerged" else ""
        report.findings.append(Finding(tname, lname, check, tensor, err, detail, _repro(tname, cls, kw, lname, seed, check),
                                       confirmed_by, known or _known(tname, variant, tensor, kw, lname, check)))

    for check in (_check_gradcheck, _check_identities, _check_flow):
        entry["checks"].append(check.__name__.removeprefix("_check_"))
        try:
            check(report, tname, cls, kw, lname, variant, base, model, x, finding)
        except Exception as e:  # noqa: BLE001 — a check PEFT's layer cannot undergo is listed with the reason
            report.skipped.append({"tuner": tname, "layer": lname, "variant": variant,
                                   "reason": f"{entry['checks'][-1]} could not run: {_first_line(e)}"})
            entry["checks"][-1] += " (not run)"
    if lname != "Linear":  # the Linear numerics run at the registry's own shapes (_numerics)
        _layer_numerics(report, tname, cls, kw, lname, variant, model, x, entry)


_SEEDS = (0, 1)  # the audited seed and the confirming one


def _check_gradcheck(report, tname, cls, kw, lname, variant, base, model, x, finding):
    with torch.no_grad():
        if not torch.equal(model(x), model(x)):
            raise RuntimeError("the forward is not deterministic in eval mode; finite differences need a function")
    for t in _gradcheck(model, x):
        detail = (f"analytic gradient disagrees with central finite differences ({t['mode']} mode, worst "
                  f"{t.get('worst', '?')}, budget {t['budget_used']:.3g})")
        if _confirm_gradcheck(model, x, t["name"]):
            coarse = _precision_not_gradient(model, x, t["name"])
            if coarse is not None:
                eps, err = coarse
                finding("precision", t["name"], t["max_abs_err"],
                        f"the forward is computed below float64 precision: finite differences fail at a small step "
                        f"({t['mode']} mode, budget {t['budget_used']:.3g}) but pass at eps {eps:g} (error {err:.2g}), "
                        f"so this is rounding noise (~1/eps), not a wrong gradient" + _variant_str(variant),
                        f"full Jacobian, 4-point stencil, eps 1e-7 (fails) and eps {eps:g} (passes)")
                continue
            finding("gradcheck", t["name"], t["max_abs_err"],
                    detail + f" — also at eps {', '.join(f'{e:g}' for e in _COARSE_STEPS)}, so not rounding noise"
                    + _variant_str(variant), "full Jacobian, 4-point stencil, eps 1e-7 and up to 1e-2")
        else:
            report.unconfirmed.append({"tuner": tname, "layer": lname, "check": "gradcheck", "tensor": t["name"],
                                       "detail": detail})


def _check_identities(report, tname, cls, kw, lname, variant, base, model, x, finding):
    for ident, err, detail in _identities(base, model, x):
        base2, model2, x2 = _build(tname, cls, kw, lname, _SEEDS[1])
        if ident in {name for name, _, _ in _identities(base2, model2, x2)}:
            finding("identities", ident, err, detail + _variant_str(variant), f"seed {_SEEDS[1]}")
        else:
            report.unconfirmed.append({"tuner": tname, "layer": lname, "check": ident, "detail": detail})


def _check_flow(report, tname, cls, kw, lname, variant, base, model, x, finding):
    _, model_f, x_f = _build(tname, cls, kw, lname, _SEEDS[0])
    for param, detail in _flow(model_f, x_f):
        _, model_f2, x_f2 = _build(tname, cls, kw, lname, _SEEDS[1])
        if any(p == param for p, _ in _flow(model_f2, x_f2)):
            finding("flow", param, math.nan, detail + _variant_str(variant), f"seed {_SEEDS[1]}")
        else:
            report.unconfirmed.append({"tuner": tname, "layer": lname, "check": "flow", "tensor": param, "detail": detail})


def _layer_numerics(report, tname, cls, kw, lname, variant, model, x, entry) -> None:
    """(d) on a convolution, Embedding or GPT-2 Conv1D: where gradguard implements the adapter PEFT built here on this
    layer type (from_peft reads it), PEFT's float64 numbers against gradguard's float64 reference through the
    lowering, confirmed on a second seed."""
    from .compare import compare_live_layer

    known = {}

    def failing(model_, x_):
        rows = compare_live_layer(_tuner_layer(model_), x_, model=model_)
        known.update({r["tensor"]: r["known_peft_defect"] for r in rows if r.get("known_peft_defect")})
        return rows[0]["adapter"], {r["tensor"]: r["max_abs"] for r in rows if not r["ok"]}

    from .bridge import from_peft
    from .registry import info

    view = _registry_view(model)
    if view is None:  # not an adapter gradguard implements: nothing to compare
        return
    layer, declared, kind, _ = view
    try:
        from_peft(layer)
    except _C.InputError as e:
        # an option or layer type gradguard does not implement: nothing to compare; but a refusal of a layer type
        # the registry declares for this adapter is listed, never silently absent
        if kind in info(declared)["layer_types"]:
            report.skipped.append({"tuner": tname, "layer": lname, "variant": variant,
                                   "reason": f"numerics vs gradguard {declared} not run: {_first_line(e)}"})
        return
    try:
        name, bad = failing(model, x)
    except Exception as e:  # noqa: BLE001 — a comparison that cannot run is listed with the reason, never hidden
        report.skipped.append({"tuner": tname, "layer": lname, "variant": variant,
                               "reason": f"numerics could not run: {_first_line(e)}"})
        return
    entry["checks"].append(f"numerics vs gradguard {name}")
    if not bad:
        return
    _, bad2 = failing(*_build(tname, cls, kw, lname, _SEEDS[1])[1:])
    p64 = _C.policy("float64")
    for tensor, err in bad.items():
        if tensor not in bad2:
            report.unconfirmed.append({"tuner": tname, "layer": lname, "check": "numerics", "tensor": tensor,
                                       "detail": f"{name}: one seed only"})
            continue
        report.findings.append(Finding(
            tname, lname, "numerics", f"{name}: {tensor}", err,
            f"PEFT's float64 result on {lname} differs from gradguard's float64 reference through the lowering to a "
            f"Linear beyond the float64 policy (atol {p64['f64_atol']:g}, rtol {p64['f64_rtol']:g})"
            + _variant_str(variant),
            _repro(tname, cls, kw, lname, _SEEDS[0], "numerics"), f"seed {_SEEDS[1]}", known.get(tensor) or _known(tname, variant, f"{name}: {tensor}", kw, lname)))


def _layer_defect(model: nn.Module):
    """The recorded PEFT layer defect (peft_defects.known_layer_defect) of the model's tuner layer, or None."""
    from .peft_defects import known_layer_defect

    view = _registry_view(model)
    return known_layer_defect(view[1], view[2], view[0], view[3]) if view else None


def _registry_view(model: nn.Module) -> tuple[nn.Module, str, str, str] | None:
    """(PEFT's tuner layer, the registry adapter the bridge recognises it as, its layer type, PEFT's adapter name), or
    None when the layer is not one gradguard implements."""
    from .bridge import _active_adapter, _identify
    from .layers import geometry

    layer = next((m for m in model.modules() if hasattr(m, "get_base_layer") and hasattr(m, "active_adapters")), None)
    if layer is None:
        return None
    try:
        adapter = _active_adapter(layer)
        return layer, _identify(layer, adapter), geometry(layer.get_base_layer()).kind, adapter
    except _C.InputError:
        return None


def _numerics(report: AuditPeftReport, tname: str) -> None:
    """(d) PEFT's float64 numbers against gradguard's float64 reference, for the registry adapters that mirror this
    tuner, at the strict float64 policy (a registry tolerance override marks the deviation as known, not absent)."""
    from .bridge import peft_unsupported_reason
    from .compare import _run_peft
    from .registry import adapters, check_dims, info, rank_hp

    p64 = _C.policy("float64")
    for name in adapters():
        entry = info(name)
        if entry["peft_type"] != tname:
            continue
        d_in, d_out = check_dims(name, 11, 7)
        given = {**rank_hp(name, 3, d_in, d_out), **({"exact_gradient": False} if name == "dora" else {})}
        rows: dict[str, list[float]] = {}
        compared = False
        for seed in (0, 1):  # a deviation counts only when a second seed shows it too
            case = _C.make_case(name, d_in, d_out, 5, seed, given)
            if peft_unsupported_reason(name, case["hp"]):
                break
            ref = _C.run_backend(name, "eigen", "float64", case["x"], case["tensors"], case["dy"], case["hp"])
            got = {k: v.double() for k, v in _run_peft(name, case, torch.float64).items()}
            compared = True
            for key, r in ref.items():
                st = _C.compare_to_reference(key, r, got[key], None, 0.0, p64["f64_atol"], p64["f64_rtol"])
                if not st["ok"]:
                    rows.setdefault(key, []).append(st["max_abs"])
        for audited in report.audited:  # say on the Linear entry that the numbers were compared, and with what
            if audited["tuner"] == tname and audited["layer"] == "Linear" and not audited["variant"] and compared:
                audited["checks"].append(f"numerics vs gradguard {name}")
        override = next((o for o in entry["tolerance_overrides"] if o["check"] == "peft"), None)
        for tensor, errs in rows.items():
            if len(errs) < 2:
                report.unconfirmed.append({"tuner": tname, "layer": "Linear", "check": "numerics", "tensor": tensor,
                                           "detail": f"{name}: one seed only"})
                continue
            report.findings.append(Finding(
                tname, "Linear", "numerics", f"{name}: {tensor}", max(errs),
                f"PEFT's float64 result differs from gradguard's float64 reference (which passes finite differences) "
                f"beyond the float64 policy (atol {p64['f64_atol']:g}, rtol {p64['f64_rtol']:g})",
                f"import gradguard as gg; print(gg.compare({name!r}, backends=('eigen', 'peft'), "
                f"{', '.join(f'{k}={v!r}' for k, v in given.items())}))", "seed 1",
                override["reason"] if override else ""))


def _variant_str(variant: dict) -> str:
    return f" [config {variant}]" if variant else ""
