"""Does `rlhfkit policy dpo` add overhead over plain TRL? Optimiser steps per second of both, same settings, one run.

    .venv/bin/python benchmarks/dpo_overhead.py [--steps 16] [--repeats 2]

Both train the bundled SmolLM2-135M-Instruct with LoRA (r 16, alpha 32, all linear layers) on the same pairs (the
self-generated instruction-following sample, `preference.synthetic`, majority labels), batch 2, max_length 256,
fp32, no gradient checkpointing, beta 0.1, sigmoid loss:
- rlhfkit: `policy.dpo.train_dpo` (what the command runs): aggregation, chat formatting, strength-weighted
  sampling, NaN-loss stop, atomic save;
- TRL: a plain script, `DPOTrainer(model, args=DPOConfig(...), train_dataset=..., peft_config=LoraConfig(...))`
  on the same rows.
Steps/s is TRL's own `train_steps_per_second` (the training loop only: model loading and saving are outside it).
The runs alternate (TRL, rlhfkit, TRL, rlhfkit, ...) and the best of each is kept, so warm-up and neighbours weigh
on both alike. Writes benchmarks/results/dpo_overhead.json (rlhfkit_steps_s, trl_steps_s, ratio, machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCH, MAX_LENGTH, LR = 2, 256, 5e-5


def run_trl(rows, steps: int, out: Path) -> float:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from rlhfkit.models.registry import resolve_model

    path = resolve_model("smollm2-135m-instruct")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    args = DPOConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
                     max_length=MAX_LENGTH, bf16=False, gradient_checkpointing=False, report_to=[],
                     save_strategy="no", logging_steps=5, seed=0, warmup_steps=0.1)
    peft = LoraConfig(task_type=TaskType.CAUSAL_LM, r=16, lora_alpha=32, lora_dropout=0.05,
                      target_modules="all-linear")
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft)
    return trainer.train().metrics["train_steps_per_second"]


def run_rlhfkit(records, steps: int, out: Path) -> float:
    from policy.dpo import DPOTrainingConfig, train_dpo

    config = DPOTrainingConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH,
                               learning_rate=LR, max_length=MAX_LENGTH, save_steps=10_000, logging_steps=5)
    return train_dpo(records, config)["train_metrics"]["train_steps_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    from benchmarks.machine import usable_cpus, write_result
    from policy.dpo import DPOTrainingConfig, dpo_rows
    from preference.synthetic import synthetic_preferences

    torch.set_num_threads(usable_cpus())
    records = synthetic_preferences(60, seed=0)
    rows, _, _ = dpo_rows(records, DPOTrainingConfig())  # the same rows rlhfkit trains on
    trl, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            trl.append(run_trl(rows, args.steps, Path(tmp) / f"trl-{repeat}"))
            ours.append(run_rlhfkit(records, args.steps, Path(tmp) / f"rlhfkit-{repeat}"))
    result = {
        "rlhfkit_steps_s": round(max(ours), 4),
        "trl_steps_s": round(max(trl), 4),
        "ratio": round(max(ours) / max(trl), 3),
        "all_rlhfkit_steps_s": ours,
        "all_trl_steps_s": trl,
        "settings": f"smollm2-135m-instruct, LoRA r16 all-linear, batch {BATCH}, max_length {MAX_LENGTH}, lr {LR}, "
                    f"{args.steps} steps, fp32, no gradient checkpointing, {len(rows)} pairs",
    }
    path = write_result("dpo_overhead", result)
    print({k: v for k, v in result.items()}, f"-> {path}")


if __name__ == "__main__":
    main()
