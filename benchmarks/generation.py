"""Generation throughput: `policy.generate` (batched, length-sorted, left-padded) against one prompt at a time.

    .venv/bin/python benchmarks/generation.py [--prompts 32] [--max-new-tokens 64] [--batch-size 16]

Both runs use the bundled SmolLM2-135M-Instruct on the same prompts (rlhfkit's built-in instruction-following
set), greedy decoding, fp32, one torch thread per core. The sequential baseline is the same code path
(`generate_candidates`) with `batch_size=1`, so the ratio measures batching alone. tokens/s counts the answer
tokens each prompt really produced (up to and including EOS): the padding positions a batch computes after a short
answer has ended count as waste against the batched run, as they should. Model loading is not timed.

A quiet machine is needed: the CPUs other processes kept busy during each timing are recorded (`other_cpus`).
Writes benchmarks/results/generation.json (batched_tok_s, sequential_tok_s, speedup, machine, ...).
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


def timed_run(prompts, batch_size: int, max_new_tokens: int, folder: Path, name: str) -> dict:
    from benchmarks.machine import CpuMonitor
    from policy.generate import GenerationConfig, generate_candidates

    config = GenerationConfig(num_candidates=1, temperature=0.0, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, backend="transformers")
    with CpuMonitor() as monitor:
        result = generate_candidates(prompts, config, folder / f"{name}.jsonl", progress=False)
    return {"tokens": result.new_tokens, "seconds": round(result.seconds, 2),
            "tok_s": result.new_tokens / result.seconds, "other_cpus": monitor.other_cpus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    import torch

    from benchmarks.machine import usable_cpus, write_result
    from policy.prompts import builtin_prompts
    from rlhfkit.core.registry import resolve_model

    torch.set_num_threads(usable_cpus())
    resolve_model("smollm2-135m-instruct")  # convert the GGUF before timing anything
    prompts = builtin_prompts(args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timed_run(prompts[:2], args.batch_size, 8, folder, "warmup")  # first-call costs (allocator, kernels)
        batched = timed_run(prompts, args.batch_size, args.max_new_tokens, folder, "batched")
        sequential = timed_run(prompts, 1, args.max_new_tokens, folder, "sequential")
    result = {
        "batched_tok_s": round(batched["tok_s"], 2),
        "sequential_tok_s": round(sequential["tok_s"], 2),
        "speedup": round(batched["tok_s"] / sequential["tok_s"], 2),
        "model": "smollm2-135m-instruct (fp32, greedy)",
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "batched": batched,
        "sequential": sequential,
    }
    path = write_result("generation", result)
    print({k: v for k, v in result.items() if not isinstance(v, dict)}, f"-> {path}")


if __name__ == "__main__":
    main()
