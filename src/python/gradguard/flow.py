"""Gradient-flow checker: ``gradguard.check(model, *inputs, ...) -> FlowReport``.

One forward and one backward on a live ``torch.nn.Module`` (plain, PEFT, or patched by another library), then every
parameter that should train is classified (DESIGN.md §3). Four sources of evidence are combined:

1. forward pre/post hooks on every module: did the module owning a parameter run, and with grad enabled?
2. the autograd graph of the loss, walked in C++ (``gradguard._C.GraphProbe``): is the parameter's AccumulateGrad
   reachable from the loss, and along which path?
3. the gradients after backward: None, exactly zero, non-finite?
4. post hooks on every walked backward node (C++): which nodes ran, which returned None for an edge, which first
   turned finite gradients into NaN/Inf.

plus PEFT knowledge (tuner layers, ``adapter_layer_names``, active adapters) for zero-at-init factors and adapter
parameters frozen by the caller.

Behaviour worth knowing (documented choices):

* The forward and backward run under ``torch.enable_grad()`` (and outside inference mode) whatever the caller's
  grad mode, so only grad-disabling *inside* the model is reported (inputs must not be inference tensors). Train/eval mode is left as it is (put the model in eval mode, or use dropout 0,
  for a deterministic check).
* Existing ``.grad`` values are stashed before the check and restored afterwards, also on exceptions: the check
  does not disturb a training loop.
* Errors (``ValueError``) rather than reports: a non-scalar loss, a default loss with no floating tensor in the
  output, and a model with nothing to check (no parameter requires grad and no active adapter parameter is frozen).
  A loss that does not require grad is *reported* (``FlowReport.loss_requires_grad`` is False, every trainable
  parameter gets a ``none`` problem with its cause), since that is exactly the "nothing trains" symptom.
* When a parameter with no gradient is reachable in the graph and a backward node on the way returned None for it,
  the cause is ``function_returned_none`` even if its owning module's forward never ran: the graph shows the
  parameter *was* used, so the node is the precise culprit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from .flow_report import CAUSES, KINDS, FlowReport, Note, Problem  # noqa: F401  (re-exported)

__all__ = [
    "Problem",
    "Note",
    "FlowReport",
    "check",
    "register_zero_init_rule",
    "KINDS",
    "CAUSES",
]

# ---------------------------------------------------------------------------------------------------------------
# Zero-at-init knowledge. The generic rule below covers every PEFT tuner we know of; registry knowledge (or a user
# with an exotic adapter) can add rules: fn(model, param_name, param) -> str reason | None.
_ZERO_INIT_RULES: list[Callable[[nn.Module, str, nn.Parameter], str | None]] = []


def register_zero_init_rule(rule: Callable[[nn.Module, str, nn.Parameter], str | None]) -> Callable:
    """Add a rule explaining an exactly-zero gradient as expected at init; returns the rule (usable as decorator)."""
    _ZERO_INIT_RULES.append(rule)
    return rule


# ---------------------------------------------------------------------------------------------------------------
_CONTAINERS = (nn.ParameterDict, nn.ParameterList, nn.ModuleDict, nn.ModuleList)


@dataclass
class _AdapterParam:
    layer: str  # qualified name of the tuner layer
    attr: str  # entry of adapter_layer_names (lora_A, hada_w1_a, ...)
    adapter: str
    active: bool
    disabled: bool
    merged: bool
    declared_frozen: bool = False  # PEFT itself keeps it frozen (frozen_peft_weight_names, e.g. LoRA-FA's A)


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _disp(module_name: str) -> str:
    return module_name or "<root>"


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _base_tuner_layer():
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except Exception:  # PEFT is optional: duck-type instead
        return None
    return BaseTunerLayer


def _is_tuner_layer(mod: nn.Module, base=None) -> bool:
    if base is not None and isinstance(mod, base):
        return True
    return bool(getattr(type(mod), "adapter_layer_names", None) or getattr(mod, "adapter_layer_names", None)) and hasattr(
        mod, "active_adapters"
    )


def _adapter_params(model: nn.Module) -> dict[int, _AdapterParam]:
    """id(param) -> where it sits among PEFT adapters (tuner layer, adapter_layer_names entry, adapter name)."""
    out: dict[int, _AdapterParam] = {}
    base = _base_tuner_layer()
    for lname, mod in model.named_modules():
        if not _is_tuner_layer(mod, base):
            continue
        try:
            active = set(mod.active_adapters)
        except Exception:
            active = set()
        disabled = bool(getattr(mod, "disable_adapters", False))
        merged = set(getattr(mod, "merged_adapters", []) or [])
        declared = getattr(mod, "frozen_peft_weight_names", None) or {}
        for attr in getattr(mod, "adapter_layer_names", ()) or ():
            container = getattr(mod, attr, None)
            if not isinstance(container, (nn.ModuleDict, nn.ParameterDict)):
                continue
            for adapter, sub in container.items():
                info = _AdapterParam(lname, attr, adapter, adapter in active, disabled, adapter in merged,
                                     attr in tuple(declared.get(adapter, ()) if isinstance(declared, dict) else ()))
                if isinstance(sub, nn.Parameter):
                    out[id(sub)] = info
                elif isinstance(sub, nn.Module):
                    for p in sub.parameters():
                        out[id(p)] = info
    return out


def _owners(model: nn.Module) -> tuple[dict[int, list[str]], dict[str, nn.Module]]:
    """id(param) -> qualified names of the modules that own it directly, containers (ParameterDict, ...) replaced
    by their nearest non-container ancestor: a ParameterDict never runs, the tuner layer holding it does."""
    modules = dict(model.named_modules(remove_duplicate=False))
    owners: dict[int, list[str]] = {}
    for mname, mod in modules.items():
        for _, p in mod.named_parameters(recurse=False):
            eff = mname
            while eff and isinstance(modules.get(eff), _CONTAINERS):
                eff = _parent(eff)
            lst = owners.setdefault(id(p), [])
            if eff not in lst:
                lst.append(eff)
    return owners, modules


def _floating_tensors(obj: Any, out: list[torch.Tensor], depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            out.append(obj)
    elif isinstance(obj, dict):  # also transformers' ModelOutput (an OrderedDict)
        for v in obj.values():
            _floating_tensors(v, out, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _floating_tensors(v, out, depth + 1)


def _default_loss(output: Any) -> tuple[torch.Tensor, str]:
    loss = None
    if isinstance(output, dict):
        loss = output.get("loss")
    elif not isinstance(output, torch.Tensor):
        loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss, "output.loss"
    tensors: list[torch.Tensor] = []
    _floating_tensors(output, tensors)
    if not tensors:
        raise ValueError(
            f"gg.check: the model output ({type(output).__name__}) has no `loss` and no floating tensor to build the "
            "default loss from; pass loss_fn=lambda output: <scalar tensor>"
        )
    total = sum(int(t.numel()) for t in tensors)
    sq = sum(((t.abs() if t.is_complex() else t).float() ** 2).sum() for t in tensors)
    return sq / max(total, 1), "mean of squares of the output's floating tensors"


class _ZeroCache:
    """is_all_zero(param), memoised by id."""

    def __init__(self):
        self._memo: dict[int, bool] = {}

    def __call__(self, p: torch.Tensor) -> bool:
        key = id(p)
        if key not in self._memo:
            self._memo[key] = _nonzero_count(p.detach()) == 0
        return self._memo[key]


def _nonzero_count(t: torch.Tensor) -> int:
    if t.is_sparse:
        t = t.coalesce().values()
    return int(torch.count_nonzero(t))


def _all_finite(t: torch.Tensor) -> bool:
    if t.is_sparse:
        t = t.coalesce().values()
    if not (t.is_floating_point() or t.is_complex()):
        return True
    return bool(torch.isfinite(t).all())


def _native():
    from gradguard import _C  # built by CMake (src/python/bindings.cpp calls bind_flow)

    if not hasattr(_C, "GraphProbe"):
        raise ImportError("gradguard._C was built without the gradient-flow bindings (bind_flow); rebuild it")
    return _C


# ---------------------------------------------------------------------------------------------------------------
def check(model: nn.Module, *inputs: Any, loss_fn: Callable[[Any], torch.Tensor] | None = None,
          optimizer: torch.optim.Optimizer | None = None, **model_kwargs: Any) -> FlowReport:
    """Run one forward (``model(*inputs, **model_kwargs)``) and backward and classify every parameter that should
    train. ``loss_fn(output)`` gives the scalar loss (default: ``output.loss``, else the mean of squares of the
    output's floating tensors). With ``optimizer``, parameters that get a gradient but are in none of its
    param_groups are reported. See the module docstring for the documented choices."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"gg.check: model must be a torch.nn.Module, got {type(model).__name__}")
    _C = _native()

    named = list(model.named_parameters())  # deduplicated: tied weights appear once, under their first name
    adapters = _adapter_params(model)
    trainable = [(n, p) for n, p in named if p.requires_grad]
    frozen_adapters = [(n, p) for n, p in named if not p.requires_grad and id(p) in adapters
                       and adapters[id(p)].active and not adapters[id(p)].disabled
                       and not adapters[id(p)].declared_frozen]
    if not trainable and not frozen_adapters:
        raise ValueError(
            "gg.check: the model has no trainable parameters (none has requires_grad=True and no parameter of an "
            "active PEFT adapter is frozen), so there is no gradient flow to check"
        )
    owners, modules = _owners(model)

    # --- 1. forward hooks: which modules ran, and with grad enabled? -------------------------------------------
    ran_grad: set[int] = set()
    ran_nograd: set[int] = set()
    out_nograd: set[int] = set()  # ran with grad on, but no output tensor required grad

    def pre_hook(mod, args):
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            ran_grad.add(id(mod))
        else:
            ran_nograd.add(id(mod))

    def post_hook(mod, args, output):
        if id(mod) in ran_grad:
            outs: list[torch.Tensor] = []
            _floating_tensors(output, outs)
            if outs and not any(t.requires_grad for t in outs):
                out_nograd.add(id(mod))

    saved_grads = {id(p): p.grad for _, p in named}
    handles = []
    report = FlowReport()
    try:
        for p_ in (p for _, p in named):
            p_.grad = None
        for mod in model.modules():
            handles.append(mod.register_forward_pre_hook(pre_hook))
            handles.append(mod.register_forward_hook(post_hook))
        with torch.inference_mode(False), torch.enable_grad():
            output = model(*inputs, **model_kwargs)
            for h in handles:
                h.remove()
            handles.clear()
            if loss_fn is not None:
                loss = loss_fn(output)
                what = "loss_fn"
            else:
                loss, what = _default_loss(output)
            if not isinstance(loss, torch.Tensor):
                raise ValueError(f"gg.check: {what} must give a torch.Tensor, got {type(loss).__name__}")
            if loss.numel() != 1:
                raise ValueError(
                    f"gg.check: loss_fn must return a scalar loss, but {what} gave a tensor of shape "
                    f"{tuple(loss.shape)}; reduce it in loss_fn (e.g. loss_fn=lambda out: <...>.mean())"
                )
            root = loss.reshape(()) if loss.dim() else loss
            try:
                report.loss = float(root.detach().float())
            except Exception:
                report.loss = None
            params = [p for _, p in trainable]
            probe = _C.GraphProbe(root, params)
            report.loss_requires_grad = bool(root.requires_grad)
            if root.requires_grad and root.is_floating_point():
                probe.instrument()
                try:
                    root.backward()
                finally:
                    probe.remove_hooks()
            elif root.requires_grad:
                report.loss_requires_grad = False
                report.messages.append(f"the loss has dtype {root.dtype}, which cannot be differentiated")
            else:
                report.messages.append(
                    f"the loss ({what}) does not require grad: nothing in the model can train; the causes per "
                    "parameter follow"
                )
        grads = {id(p): p.grad for _, p in named}
    finally:
        for h in handles:
            h.remove()
        for _, p in named:
            p.grad = saved_grads[id(p)]

    # --- classification ----------------------------------------------------------------------------------------
    def owner_of(p: nn.Parameter) -> list[str]:
        return owners.get(id(p), [""])

    def status(mnames: list[str]) -> tuple[bool, bool]:
        grad = any(id(modules[m]) in ran_grad for m in mnames if m in modules)
        nograd = any(id(modules[m]) in ran_nograd for m in mnames if m in modules)
        return grad, nograd

    param_index = {id(p): i for i, p in enumerate(params)}
    loss_nonfinite = report.loss is not None and not math.isfinite(report.loss)
    opt_ids = None
    if optimizer is not None:
        opt_ids = {id(q) for g in optimizer.param_groups for q in g["params"]}
    zero_params = _ZeroCache()  # lazily: counting zeros of every base weight of a 7B model would be wasteful

    for name, p in frozen_adapters:
        a = adapters[id(p)]
        report.checked.append(name)
        report.problems.append(Problem(
            name, owner_of(p)[0], "frozen_adapter", "frozen_by_caller",
            f"`{name}` is a parameter of active adapter '{a.adapter}' ({a.attr}) in `{a.layer}` but has "
            f"requires_grad=False (something froze it, e.g. a by-name freeze that keeps only lora_A/lora_B "
            f"trainable): call requires_grad_(True) on it after that freeze, or add '{a.attr}' to the names kept "
            "trainable"))

    for name, p in trainable:
        report.checked.append(name)
        i = param_index[id(p)]
        mnames = owner_of(p)
        mod = mnames[0]
        g = grads[id(p)]
        a = adapters.get(id(p))
        # The autograd path is only materialised for reported parameters: on a large model a path is long.
        def path(i=i):
            return list(probe.path(i)) or None
        if g is None:
            report.problems.append(_classify_none(name, mod, mnames, p, i, probe, path, status, modules,
                                                  ran_grad, ran_nograd, out_nograd, a, report.loss_requires_grad))
            continue
        if not _all_finite(g):
            hit = probe.first_nonfinite(i) or probe.first_nonfinite()
            node = hit["name"] if hit else None
            if node is not None:
                hint = (f"backward node `{node}` was the first to turn finite gradients into NaN/Inf on the way to "
                        f"`{name}`: guard its forward input (e.g. clamp before sqrt/log/division) or fix that "
                        "backward formula")
                if loss_nonfinite:
                    hint += f"; note the loss itself is {report.loss}, so the forward already produced non-finite values"
            elif loss_nonfinite:
                hint = (f"the loss itself is {report.loss}: the forward produced non-finite values before any backward "
                        "node ran; find the first NaN/Inf in the forward (e.g. with torch.autograd.detect_anomaly)")
            else:
                hint = (f"no backward node turned finite gradients into NaN/Inf on the way to `{name}`: a gradient hook "
                        "or an input gradient introduced them; inspect hooks registered on the tensors involved")
            report.problems.append(Problem(name, mod, "nonfinite", "nonfinite_backward", hint, node, path()))
            continue
        if _nonzero_count(g) == 0:
            why = _explain_zero(model, name, p, a, adapters, named, owners, zero_params)
            if why is not None:
                report.notes.append(Note(name, mod, "zero", "zero_init_factor", why))
            else:
                frozen_zero = _frozen_zero_cofactor(p, a, adapters, named, zero_params)
                extra = (f"; its co-factor `{frozen_zero}` is all zeros and frozen, so this never changes"
                         if frozen_zero else "")
                report.problems.append(Problem(
                    name, mod, "zero", "always_zero",
                    f"`{name}` got an exactly zero gradient that no zero-initialised trainable factor of "
                    f"{'adapter ' + repr(a.adapter) + ' in `' + a.layer + '`' if a else '`' + _disp(mod) + '`'} explains"
                    f"{extra}: look for a zero scale (alpha/scaling = 0), a zero mask or a saturated activation "
                    "multiplying it", None, path()))
                continue
        if opt_ids is not None and id(p) not in opt_ids:
            report.problems.append(Problem(
                name, mod, "not_in_optimizer", "optimizer_missing",
                f"`{name}` gets a gradient but is in none of the optimizer's param_groups (the optimizer was probably "
                "created before this parameter/adapter was added): build the optimizer after get_peft_model, or "
                "optimizer.add_param_group({'params': [...]}) for it", None, None))
    return report


def _classify_none(name, mod, mnames, p, i, probe, path, status, modules, ran_grad, ran_nograd, out_nograd, a,
                   loss_requires_grad) -> Problem:
    if probe.reachable(i):
        path = path()
        b = probe.blocker(i)
        node = b["name"] if b else (path[-2] if len(path) >= 2 else path[-1])
        if b is not None and b["edge"] >= 0:
            hint = (f"backward node `{node}` ran but returned None for its input #{b['edge']}, which leads to "
                    f"`{name}`: make that backward (e.g. the custom autograd.Function's backward) return a gradient "
                    "for this input")
        elif b is not None:
            hint = (f"backward node `{node}` on the path to `{name}` never ran although gradient reached it: check "
                    "hooks or errors swallowed during backward")
        else:
            hint = (f"`{name}` is reachable from the loss through `{node}` but received no gradient: a hook or the "
                    f"function `{node}` dropped it")
        return Problem(name, mod, "none", "function_returned_none", hint, node, path)

    ran_g, ran_ng = status(mnames)
    where = f"adapter '{a.adapter}' of `{_disp(a.layer)}`" if a else f"module `{_disp(mod)}`"
    mod_d = _disp(mod)
    # A merged, disabled or inactive adapter explains an unused parameter better than anything below: say so.
    state = None
    if a is not None and a.merged:
        state = f"{where} is merged into the base weight, so `{name}` is unused: unmerge the adapter before training"
    elif a is not None and a.disabled:
        state = f"adapters are disabled on `{_disp(a.layer)}`, so `{name}` is unused: re-enable them or freeze it"
    elif a is not None and not a.active:
        state = f"{where} is not active, so `{name}` is unused: set_adapter('{a.adapter}') or freeze it"
    if not ran_g and not ran_ng:
        if state:
            return Problem(name, mod, "none", "forward_bypassed", state, None, None)
        anc = _nearest_ran_ancestor(mod, modules, ran_grad, ran_nograd)
        hint = (f"the forward of `{mod_d}` never ran, so `{name}` never entered the graph: something computed its "
                f"output without calling it"
                + (f" (the nearest ancestor that ran is `{anc}`, whose forward may be patched or fused)" if anc is not None
                   else "")
                + f"; make the replacement use `{name.rsplit('.', 1)[-1]}` too or restore the original forward")
        return Problem(name, mod, "none", "forward_bypassed", hint, None, None)
    if not ran_g:
        if state:
            return Problem(name, mod, "none", "ran_without_grad", state, None, None)
        top = _top_nograd(mod, modules, ran_grad, ran_nograd)
        hint = (f"`{mod_d}` only ran with gradients disabled"
                + (f" (the grad-free region starts where `{top}` is called)" if top and top != mod else "")
                + ": remove the torch.no_grad()/inference_mode around it, or for reentrant torch.utils.checkpoint "
                  "pass use_reentrant=False or an input that requires grad")
        return Problem(name, mod, "none", "ran_without_grad", hint, None, None)
    if state:
        hint = state
    elif not loss_requires_grad:
        hint = (f"the loss does not require grad, so nothing reaches `{name}`: compute the loss from the model output "
                "without .detach()/.item()/no_grad")
    elif id(modules.get(mod)) in out_nograd:
        hint = (f"`{mod_d}` ran with grad enabled but none of its outputs required grad: its forward uses `{name}` "
                "through .detach()/.data or a no_grad block; use the parameter itself")
    else:
        hint = (f"`{mod_d}` ran with grad enabled but `{name}` is not reachable from the loss: it is used only through "
                ".detach()/.data (or not used at all); use the parameter itself in a differentiable op, or freeze it")
    return Problem(name, mod, "none", "detached_or_unused", hint, None, None)


def _nearest_ran_ancestor(mod: str, modules, ran_grad, ran_nograd) -> str | None:
    cur = mod
    while cur:
        cur = _parent(cur)
        m = modules.get(cur)
        if m is not None and (id(m) in ran_grad or id(m) in ran_nograd):
            return cur or "<root>"
    return None


def _top_nograd(mod: str, modules, ran_grad, ran_nograd) -> str | None:
    """Outermost ancestor (or the module itself) that only ran without grad: where no_grad was entered."""
    top = None
    cur = mod
    while True:
        m = modules.get(cur)
        if m is not None and id(m) in ran_nograd and id(m) not in ran_grad:
            top = cur
        elif m is not None and id(m) in ran_grad:
            break
        if not cur:
            break
        cur = _parent(cur)
    return top


def _same_group(p, a, adapters, named, owners) -> Iterable[tuple[str, nn.Parameter]]:
    """Parameters that can make `p`'s gradient vanish at init: the other factors of the same adapter in the same
    tuner layer; for non-PEFT parameters, those of the same module, its parent and the parent's other children."""
    if a is not None:
        for n, q in named:
            b = adapters.get(id(q))
            if q is not p and b is not None and b.layer == a.layer and b.adapter == a.adapter:
                yield n, q
        return
    mine = set(owners.get(id(p), []))
    parents = {_parent(m) for m in mine if m}
    for n, q in named:
        # A zero bias never zeroes another parameter's gradient; zero-initialised biases are everywhere.
        if q is p or id(q) in adapters or n.endswith("bias"):
            continue
        for m in owners.get(id(q), []):
            if m in mine or (m and _parent(m) in parents) or m in parents:
                yield n, q
                break


def _explain_zero(model, name, p, a, adapters, named, owners, zero_params) -> str | None:
    for rule in _ZERO_INIT_RULES:
        try:
            why = rule(model, name, p)
        except Exception:
            why = None
        if why:
            return why
    for n, q in _same_group(p, a, adapters, named, owners):
        if q.requires_grad and zero_params(q):
            scope = f"adapter '{a.adapter}' of `{a.layer}`" if a else "the same module"
            return (f"exactly zero because `{n}` ({scope}) is all zeros: a zero-initialised factor moves on the first "
                    "step; one zeroed on purpose (a pruned gate) keeps this parameter still until it is non-zero again")
    return None


def _frozen_zero_cofactor(p, a, adapters, named, zero_params) -> str | None:
    if a is None:
        return None
    for n, q in named:
        b = adapters.get(id(q))
        if q is not p and b is not None and b.layer == a.layer and b.adapter == a.adapter \
                and not q.requires_grad and zero_params(q):
            return n
    return None
