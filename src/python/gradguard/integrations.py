"""gradguard inside a training loop: ``GradGuardCallback`` for ``transformers.Trainer``.

    trainer = Trainer(model=peft_model, args=args, train_dataset=ds, callbacks=[gg.integrations.GradGuardCallback()])

Before the first optimizer step it runs ``gg.check`` on the live model with the first training batch (one extra
forward + backward, gradients cleared afterwards, so training is unchanged) and, with ``every_n_steps``, again every n
steps. A problem (a trainable adapter parameter with no gradient, a frozen adapter parameter, a parameter missing from
the optimizer, ...) raises ``GradGuardError`` with the problem table (``on_problem="raise"``, the default: training
stops at step 1 instead of running for hours without learning) or warns (``"warn"``). It also checks that every
parameter the flow check saw training changed in the first two optimizer steps once it had a non-zero gradient: one
whose gradient is zero in a step (LoRA's A while B = 0; weight_lora's factors while top-K pruning holds their gate at
zero) is not expected to move in that step. Each check logs one line.
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Callable

import torch

from .flow import FlowReport, check

try:  # the callback base class; gradguard itself does not need transformers
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover — transformers is a dependency of the pinned environment
    TrainerCallback = object

logger = logging.getLogger("gradguard")


class GradGuardError(RuntimeError):
    """Training would not train what it should; ``.report`` is the FlowReport (or None for a no-update failure)."""

    def __init__(self, message: str, report: FlowReport | None = None):
        super().__init__(message)
        self.report = report


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


class GradGuardCallback(TrainerCallback):
    """See the module docstring. ``batch``: the inputs to check with (a dict of model keyword arguments; default: the
    first batch of the trainer's train dataloader); ``loss_fn(output)`` as in gg.check (default ``output.loss``)."""

    def __init__(self, on_problem: str = "raise", every_n_steps: int | None = None, check_updates: bool = True,
                 batch: dict | None = None, loss_fn: Callable[[Any], torch.Tensor] | None = None):
        if on_problem not in ("raise", "warn"):
            raise ValueError(f"argument 'on_problem': expected 'raise' or 'warn', got {on_problem!r}")
        if every_n_steps is not None and (isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int)
                                          or every_n_steps < 1):
            raise ValueError(f"argument 'every_n_steps': expected a positive integer or None, got {every_n_steps!r}")
        self.on_problem = on_problem
        self.every_n_steps = every_n_steps
        self.check_updates = check_updates
        self.batch = batch
        self.loss_fn = loss_fn
        self.reports: list[tuple[int, FlowReport]] = []  # (global step, report) of every check run
        self._snapshot: dict[str, torch.Tensor] = {}     # parameter -> value before the first optimizer step
        self._had_grad: set[str] = set()  # snapshotted parameters with a non-zero gradient and lr > 0 so far
        self._zero_lr: set[str] = set()   # ... with a non-zero gradient only in steps whose learning rate was 0

    # --- the flow check --------------------------------------------------------------------------------------------
    def _batch(self, train_dataloader) -> dict:
        if self.batch is not None:
            return self.batch
        if train_dataloader is None:
            raise ValueError("GradGuardCallback: no batch to check with: pass batch=... or train with a train_dataset")
        return next(iter(train_dataloader))

    def _check(self, step: int, model, optimizer, train_dataloader) -> FlowReport:
        device = next(model.parameters()).device
        batch = _to_device(self._batch(train_dataloader), device)
        inputs = batch if isinstance(batch, dict) else {}
        args = () if isinstance(batch, dict) else tuple(batch) if isinstance(batch, (list, tuple)) else (batch,)
        report = check(model, *args, loss_fn=self.loss_fn, optimizer=optimizer, **inputs)
        model.zero_grad(set_to_none=True)  # the check's gradients must not leak into the first real step
        self.reports.append((step, report))
        logger.info("gradguard step %d: %s - %d parameters checked, %d problem(s), %d note(s)", step,
                    "OK" if report.ok else "PROBLEMS", len(report.checked), len(report.problems), len(report.notes))
        if not report.ok:
            self._fail(f"gradguard: at step {step} {len(report.problems)} parameter(s) will not train as "
                       f"intended:\n{report}", report)
        return report

    def _fail(self, message: str, report: FlowReport | None) -> None:
        if self.on_problem == "raise":
            raise GradGuardError(message, report)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # --- Trainer hooks ---------------------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, train_dataloader=None, **kwargs):
        report = self._check(state.global_step, model, optimizer, train_dataloader)
        if self.check_updates:
            params = dict(model.named_parameters())
            trained = [n for n in report.checked if n in params and params[n].requires_grad]
            self._snapshot = {n: params[n].detach().clone() for n in trained}
            self._had_grad = set()
            self._zero_lr = set()

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
        # The gradients the optimizer is about to apply. A parameter is expected to move in this step only when its
        # gradient is non-zero and finite (a mixed-precision scaler skips a step with Inf/NaN gradients) and its param
        # group's learning rate is above 0 (a warmup schedule starts at 0); momentum moving it otherwise is fine.
        if not self._snapshot or model is None:
            return
        lr = {id(p): g.get("lr", 1.0) for g in getattr(optimizer, "param_groups", ()) for p in g["params"]}
        for n, p in model.named_parameters():
            if n in self._snapshot and p.grad is not None and bool(p.grad.ne(0).any()) \
                    and bool(torch.isfinite(p.grad).all()):
                (self._had_grad if lr.get(id(p), 1.0) > 0 else self._zero_lr).add(n)

    def on_step_end(self, args, state, control, model=None, optimizer=None, train_dataloader=None, **kwargs):
        if self._snapshot:
            self._check_updates(state.global_step, model)
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._check(state.global_step, model, optimizer, train_dataloader)

    def _check_updates(self, step: int, model) -> None:
        params = dict(model.named_parameters())
        still = [n for n, before in self._snapshot.items() if torch.equal(params[n].detach(), before)]
        for n in [n for n in self._snapshot if n not in still]:
            del self._snapshot[n]
        late = [n for n in still if n in self._had_grad]
        if step >= 2:  # the window closes: a gradient that only ever met a learning rate of 0 moved nothing either
            late += [n for n in still if n in self._zero_lr and n not in self._had_grad]
        if late:
            for n in late:
                del self._snapshot[n]
            zero_lr = all(n in self._zero_lr and n not in self._had_grad for n in late)
            why = ("their param group's learning rate was 0 in every step they had a gradient" if zero_lr else
                   "learning rate 0, a stale optimizer, or an update overwritten")
            self._fail(f"gradguard: {len(late)} parameter(s) that got a non-zero gradient did not change in optimizer "
                       f"step(s) 1..{step} ({why}): " + ", ".join(late[:20]) + (" ..." if len(late) > 20 else ""),
                       None)
        if step >= 2:
            self._snapshot.clear()
