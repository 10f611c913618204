"""What each policy-update method costs on this machine: DPO, GRPO, RLOO and PPO on the bundled SmolLM2 with LoRA.

    .venv/bin/python benchmarks/policy_methods.py [--steps 4]

Each method runs in its own process (so peak memory is its own) for `--steps` optimiser steps with rlhfkit's
defaults otherwise: LoRA r 16 on all linear layers, fp32, one torch thread per usable CPU.
- DPO: 4 labeled pairs per step (the self-generated sample, `preference.synthetic`), no generation;
- GRPO / RLOO: 1 prompt x 4 sampled answers per step (rlhfkit's built-in prompts), reward = IFEval verifier (loose);
- PPO: 4 prompts x 1 answer per update, 2 PPO epochs over minibatches of 2, same reward, a LoRA critic.
Answers are capped at 48 tokens. Reported per method: seconds per step (the training loop's wall time divided by
steps; model loading and saving excluded), answers sampled per step, and peak resident memory.
Writes benchmarks/results/policy_methods.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
TOKENS = 48


def run_one(method: str, steps: int, out: Path) -> dict:
    """Runs in a child process: train `steps` steps, return timing."""
    import torch

    from benchmarks.machine import usable_cpus
    from policy.prompts import builtin_prompts

    torch.set_num_threads(usable_cpus())
    prompts = builtin_prompts(16)
    if method == "dpo":
        from policy.dpo import DPOTrainingConfig, train_dpo
        from preference.synthetic import synthetic_preferences

        summary = train_dpo(synthetic_preferences(60), DPOTrainingConfig(
            output_dir=str(out), max_steps=steps, per_device_train_batch_size=4, max_length=256, save_steps=10_000))
        seconds, answers = summary["train_metrics"]["train_runtime"], 0
    elif method in ("grpo", "rloo"):
        from policy.rl import RLTrainingConfig, train_rl

        summary = train_rl(prompts, RLTrainingConfig(
            output_dir=str(out), algo=method, max_steps=steps, num_generations=4, per_device_train_batch_size=4,
            max_completion_length=TOKENS, verifier="loose", save_steps=10_000))
        seconds, answers = summary["train_metrics"]["train_runtime"], 4
    else:
        from policy.ppo import PPOTrainingConfig, train_ppo

        summary = train_ppo(prompts, PPOTrainingConfig(
            output_dir=str(out), updates=steps, per_device_train_batch_size=4, mini_batch_size=2,
            max_completion_length=TOKENS, verifier="loose", save_steps=10_000))
        seconds, answers = summary["train_runtime"], 4
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_step": round(seconds / steps, 2), "answers_per_step": answers,
            "peak_rss_mb": round(peak_mb), "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--child", choices=["dpo", "grpo", "rloo", "ppo"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_one(args.child, args.steps, Path(args.out))), flush=True)
        return
    from benchmarks.machine import write_result
    from rlhfkit.models.registry import resolve_model

    resolve_model("smollm2-135m-instruct")
    methods = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("dpo", "grpo", "rloo", "ppo"):
            done = subprocess.run([sys.executable, __file__, "--child", method, "--steps", str(args.steps), "--out",
                                   str(Path(tmp) / method)], capture_output=True, text=True)
            line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
            if done.returncode != 0 or line is None:
                sys.exit(f"{method} failed:\n{done.stderr[-3000:]}")
            methods[method] = json.loads(line[len("RESULT "):])
            print(method, methods[method], flush=True)
    path = write_result("policy_methods", {
        "methods": methods,
        "settings": f"smollm2-135m-instruct, LoRA r16 all-linear, fp32, answers <= {TOKENS} tokens, "
                    "reward = IFEval verifier (loose); DPO: 4 pairs/step; GRPO/RLOO: 1 prompt x 4 answers/step; "
                    "PPO: 4 prompts x 1 answer/update, 2 epochs, LoRA critic",
    })
    print(f"-> {path}")


if __name__ == "__main__":
    main()
