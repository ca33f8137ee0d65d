"""The adapter registry as seen from Python (the table itself lives in C++: src/core/registry.cpp)."""
from __future__ import annotations

from . import _C


def adapters() -> list[str]:
    """Names of every registered adapter, in registration order."""
    return list(_C.adapters())


def info(name: str) -> dict:
    """The registry entry of ``name``: PEFT type, hyper-parameters with PEFT's defaults, tensors (PEFT key, init,
    zero-gradient-at-init reason), backends and dtypes, tolerance overrides, notes. Raises InputError listing the
    known names for an unknown one."""
    return _C.info(name)


def trainable_names(name: str, d_in: int, d_out: int, hp: dict) -> list[str]:
    """Names of the trainable tensors present for these hyper-parameters, in registry order."""
    shapes = _C.tensor_shapes(name, d_in, d_out, hp)
    return [t["name"] for t in info(name)["tensors"] if t["role"] == "trainable" and t["name"] in shapes]


def declares_cuda() -> list[str]:
    """Adapters whose registry entry declares the cuda backend, in registry order, whether or not this build compiled
    it (``gg.cuda_status()["adapters"]`` is what the build has)."""
    return [n for n in _C.adapters() if any(b["backend"] == "cuda" for b in info(n)["backends"])]


def rank_hp(name: str, r: int, d_in: int, d_out: int) -> dict:
    """``{rank hyper-parameter: r}`` for an adapter with a rank (LoRA's ``r``, AdaLoRA's ``init_r``; nothing for IA3)
    plus the block sizes a ``d_in`` x ``d_out`` layer needs (GraLoRA's ``gralora_k``, ...): how generic code asks for
    "rank r at this shape" without knowing the parameters' names."""
    return dict(_C.rank_hyper(name, d_in, d_out, r))


def check_dims(name: str, d_in: int, d_out: int) -> tuple[int, int]:
    """The ``(d_in, d_out)`` a generic check runs ``name`` at for this requested shape: itself, or the nearest shape
    the adapter can take at all (RoAd pairs output rows, so its d_out is made even)."""
    return tuple(_C.check_dims(name, d_in, d_out))


def check_hp(name: str, d_in: int, d_out: int, given: dict, default_rank: int) -> dict:
    """The hyper-parameters a check runs with: ``given`` over the check values for this shape, chosen for the caller's
    rank where ``given`` has one (so block sizes divide it), else for ``default_rank``."""
    param = info(name)["rank_param"]
    r = int(given[param]) if param and param in given else default_rank
    return {**rank_hp(name, r, d_in, d_out), **given}
