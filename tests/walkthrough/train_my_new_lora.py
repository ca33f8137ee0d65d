"""README "Your own adapter", step 4: a Trainer run of the scaffolded my_new_lora on the tiny random Llama under
GradGuardCallback. Exit 0 when the loss falls, every adapter tensor moved and every gradguard check was OK."""
import logging
import sys

import torch
from peft import get_peft_model
from transformers import Trainer, TrainingArguments

from gradguard.integrations import GradGuardCallback
from gradguard.models import tiny_llama
from gradguard.peft import MyNewLoraConfig

sys.path.insert(0, "tests/python")
from trainer_helpers import CopyTask, losses  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
logging.getLogger("transformers").setLevel(logging.WARNING)
model = get_peft_model(tiny_llama(0), MyNewLoraConfig(r=4, target_modules=["q_proj", "v_proj", "gate_proj", "up_proj",
                                                                          "down_proj"]))
model.print_trainable_parameters()
before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
args = TrainingArguments(output_dir=sys.argv[1], max_steps=30, per_device_train_batch_size=8, learning_rate=3e-2,
                         logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
                         lr_scheduler_type="constant")
callback = GradGuardCallback(every_n_steps=10)
trainer = Trainer(model=model, args=args, train_dataset=CopyTask(), callbacks=[callback])
trainer.train()
loss = losses(trainer)
unchanged = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p.detach(), before[n])]
first, last = sum(loss[:5]) / 5, sum(loss[-5:]) / 5
print(f"loss, mean of the first 5 steps -> last 5: {first:.3f} -> {last:.3f}")
print("gradguard checks:", [(step, "OK" if r.ok else "PROBLEMS") for step, r in callback.reports])
print("adapter tensors unchanged:", unchanged)
# the threshold of tests/python/test_integrations.py's runs of the same task (step-to-step noise ~0.03)
sys.exit(0 if last < first - 0.25 and not unchanged and all(r.ok for _, r in callback.reports) else 1)
