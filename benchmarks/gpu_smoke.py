"""GPU smoke check: the paths a CPU never runs, each executed once on whatever accelerator is present.

    .venv/bin/python benchmarks/gpu_smoke.py [--out PATH]

1. `reward_bf16`: two bf16 steps of TRL reward training (the bundled MiniLM) through `reward.train`.
2. `dpo_bf16_lora`: two bf16 DPO steps with LoRA on the bundled SmolLM2-135M through `policy.dpo`.
3. `vllm_generate`: 64 answers (32 prompts x 2) from the vLLM engine rlhfkit starts from `.venv-vllm` (on a GPU
   machine that virtualenv holds the CUDA build: `make setup VLLM_SPEC="vllm==<version>"`).
4. `deepspeed_zero2_dpo`: with more than one GPU, `accelerate launch` of two DPO steps under
   configs/accelerate/deepspeed_zero2.yaml on every GPU (`pip install deepspeed` first); skipped with a reason on
   one GPU.

Each check records `status` (ok, failed with its error, or skipped with the reason), its seconds and what it
produced (loss, tokens/s, peak GPU memory); one failure does not stop the others. The data are made here (synthetic
preferences, rlhfkit's built-in prompts): nothing is downloaded.

With a GPU it writes benchmarks/results/gpu_smoke.json (`machine` names the GPU); without one it runs the same
steps on the CPU in fp32 (transformers trains bf16 on GPUs only) as a check of the script itself, and writes
benchmarks/.work/gpu_smoke_cpu.json, never the committed result. The exit status is 1 when a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _peak_gpu_gib() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 2)


def _check(name: str, run: Callable[[], dict[str, Any]], results: dict[str, Any]) -> None:
    started = time.perf_counter()
    try:
        outcome = {"status": "ok", **run()}
    except _Skip as skip:
        outcome = {"status": "skipped", "reason": str(skip)}
    except Exception as exc:  # a smoke check reports every failure and goes on to the next
        outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
                   "traceback": traceback.format_exc()[-4000:]}
    outcome["seconds"] = round(time.perf_counter() - started, 2)
    outcome["peak_gpu_gib"] = _peak_gpu_gib()
    results[name] = outcome
    print(f"{name}: {outcome['status']} ({outcome['seconds']} s)", flush=True)


class _Skip(Exception):
    pass


def _bf16() -> bool:
    import torch

    return torch.cuda.is_available()


def _records(n: int = 32):
    from preference.synthetic import synthetic_preferences

    return synthetic_preferences(n_prompts=n, seed=0)


def reward_bf16(work: Path) -> dict[str, Any]:
    from reward.config import RewardTrainingConfig
    from reward.train import train_reward_model

    config = RewardTrainingConfig(output_dir=str(work / "reward"), bf16=_bf16(), max_length=128,
                                  per_device_train_batch_size=8, num_train_epochs=1, logging_steps=1)
    result = train_reward_model(_records(16), config)
    losses = [m.get("train_loss") for m in result.metrics]
    return {"precision": "bf16" if config.bf16 else "fp32", "train_loss": losses}


def dpo_bf16_lora(work: Path) -> dict[str, Any]:
    from policy.config import DPOTrainingConfig
    from policy.dpo import train_dpo

    config = DPOTrainingConfig(output_dir=str(work / "dpo"), bf16=_bf16(), lora=True, max_steps=2,
                               per_device_train_batch_size=4, max_length=128, logging_steps=1)
    summary = train_dpo(_records(), config)
    return {"precision": "bf16" if config.bf16 else "fp32",
            "train_loss": summary.get("train_metrics", {}).get("train_loss")}


def vllm_generate(work: Path) -> dict[str, Any]:
    from policy.generate import GenerationConfig, generate_candidates
    from policy.prompts import builtin_prompts
    from rlhfkit.models import vllm_server

    if not vllm_server.installed():
        raise _Skip("the vLLM engine's virtualenv is not installed (make setup)")
    config = GenerationConfig(num_candidates=2, max_new_tokens=64, temperature=0.8, backend="vllm-server")
    try:
        result = generate_candidates(builtin_prompts(32), config, work / "candidates.jsonl", progress=False)
    finally:
        vllm_server.stop_all()
    answers = sum(len(json.loads(line)["candidates"]) for line in result.path.read_text().splitlines())
    return {"answers": answers, "tokens_per_s": round(result.tokens_per_s, 1), "engine": result.engine,
            "cpu_build": vllm_server.cpu_build()}


def deepspeed_zero2_dpo(work: Path) -> dict[str, Any]:
    import importlib.util

    import torch

    from preference.store import save_preferences

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus < 2:
        raise _Skip(f"{gpus} GPU(s): ZeRO-2 is checked with two or more")
    if importlib.util.find_spec("deepspeed") is None:
        raise _Skip("deepspeed is not installed: pip install deepspeed")
    store = work / "prefs"
    save_preferences(_records(), store)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "configs" / "accelerate" / "deepspeed_zero2.yaml"), "--num_processes", str(gpus),
               "-m", "rlhfkit", "policy", "dpo", str(store), "-o", str(work / "zero2"), "--max-steps", "2",
               "--batch-size", "2", "--max-length", "128"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr[-3000:]}")
    summary = json.loads((work / "zero2" / "summary.json").read_text())
    return {"processes": gpus, "train_loss": summary.get("train_metrics", {}).get("train_loss")}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="Where the JSON goes (default: see the module docstring).")
    args = parser.parse_args(argv)
    on_gpu = torch.cuda.is_available()
    out = args.out or (ROOT / "benchmarks" / ("results/gpu_smoke.json" if on_gpu else ".work/gpu_smoke_cpu.json"))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("reward_bf16", reward_bf16), ("dpo_bf16_lora", dpo_bf16_lora),
                            ("vllm_generate", vllm_generate), ("deepspeed_zero2_dpo", deepspeed_zero2_dpo)):
            _check(name, lambda: check(Path(tmp)), results)
    from rlhfkit.core.atomic import atomic_write_text
    from rlhfkit.core.machine import machine_info

    out.parent.mkdir(parents=True, exist_ok=True)
    failed = [name for name, outcome in results.items() if outcome["status"] == "failed"]
    data = {"accelerator": torch.cuda.get_device_name(0) if on_gpu else None, "checks": results,
            "all_passed": not failed, "machine": machine_info()}
    atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    print(f"written: {out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
