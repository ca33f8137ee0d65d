"""Shared by the Trainer tests (test_integrations.py, test_user_story.py): the CopyTask data set, a CPU Trainer with
fixed, deterministic arguments, and the logged training losses."""
from __future__ import annotations

import torch
from transformers import Trainer, TrainingArguments

from gradguard.models import VOCAB

# every attention and MLP projection but k/o of tiny_llama's 2 blocks: 10 adapted layers
TARGETS = ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"]


class CopyTask(torch.utils.data.Dataset):
    """64 sequences drawn from 4 fixed random ones: next-token statistics a tiny Llama's adapters pick up within a
    few dozen steps (loss from ln(128) ~ 4.85 down by well over 20%)."""

    def __init__(self, n: int = 64, seq: int = 16, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        sequences = torch.randint(0, VOCAB, (4, seq), generator=g)
        self.ids = sequences[torch.arange(n) % 4]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i].clone()}


def make_trainer(model, tmp_path, callback, steps: int = 30, lr: float = 3e-2, **args_overrides):
    """A Trainer on CPU: batch 8, constant learning rate, a log line (loss) every step, nothing saved. ``callback``:
    one TrainerCallback or a list of them; ``args_overrides`` go to TrainingArguments (e.g. a warmup schedule)."""
    options = dict(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=8, learning_rate=lr,
                   logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
                   lr_scheduler_type="constant")
    args = TrainingArguments(**{**options, **args_overrides})
    callbacks = list(callback) if isinstance(callback, (list, tuple)) else [callback]
    return Trainer(model=model, args=args, train_dataset=CopyTask(), callbacks=callbacks)


def losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]
