"""One DPO round on the policy's own answers, labeled by the IFEval verifier: does the held-out pass rate rise?

    .venv/bin/python benchmarks/dpo_quality.py [--train-prompts 200] [--candidates 4]   # stages resume

1. Split `../shared/data/ifeval/input_data.jsonl` (541 prompts, read in place) by prompt: 25% held out (seed 0).
2. Sample K answers per training prompt from the bundled SmolLM2-135M-Instruct (temperature 1.0, 192 tokens).
3. Pair every two distinct answers of a prompt and label each pair with the verifier annotator (loose mode: the
   answer following more of the prompt's instructions wins; ties and both-bad pairs are dropped by DPO's policy).
4. DPO with LoRA on CPU (`policy.dpo.train_dpo`, sigmoid loss, beta 0.1, 1 epoch).
5. Answer the held-out prompts greedily (256 tokens) with the model before and after, and verify both.

The headline is the instruction-level loose pass rate (chosen before any run: it is the most sensitive of IFEval's
four numbers); all four are in the JSON. The interval of the change is a paired bootstrap over held-out prompts
(`policy.evaluate.paired_delta`, 2,000 resamples). Writes benchmarks/results/dpo_quality.json (pass_rate_before,
pass_rate_after, delta, ci_low, ci_high, n_heldout, machine, ...) and benchmarks/results/dpo_quality.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

IFEVAL = ROOT.parent / "shared" / "data" / "ifeval" / "input_data.jsonl"
WORK = ROOT / "benchmarks" / ".work" / "dpo_quality"
SEED = 0
HEADLINE = "instruction_loose"


def stage(name: str, timings: dict[str, float]):
    """Time a stage into `timings` (a resumed stage that finds its output takes ~0 s)."""
    class _Timer:
        def __enter__(self):
            self.start = time.perf_counter()
            print(f"== {name}", flush=True)

        def __exit__(self, *exc):
            timings[name] = round(time.perf_counter() - self.start, 1) + timings.get(name, 0.0)

    return _Timer()


def main() -> None:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-prompts", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--smoke", action="store_true", help="A quick check of the script: 4 training and 6 held-out "
                        "prompts, short answers, in a temporary folder; writes no result.")
    args = parser.parse_args()

    if args.smoke:
        import tempfile

        WORK = Path(tempfile.mkdtemp()) / "dpo_quality"
        args.train_prompts, args.candidates = 4, 2
    if not IFEVAL.exists():
        sys.exit(f"{IFEVAL} not found: this benchmark reads the shared IFEval prompts in place")
    import torch

    from annotation.verifier import VerifierAnnotator
    from benchmarks.machine import usable_cpus, write_result
    from policy.candidate_pairs import candidate_pairs
    from policy.dpo import DPOTrainingConfig, train_dpo
    from policy.evaluate import LEVELS, PolicyEvalConfig, evaluate_policy
    from policy.generate import GenerationConfig, generate_candidates, read_candidates
    from policy.prompts import read_prompts, split_prompts
    from preference.store import PreferenceStore

    torch.set_num_threads(usable_cpus())
    WORK.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    train, heldout = split_prompts(read_prompts(IFEVAL), 0.25, seed=SEED)
    train = train[: args.train_prompts]
    heldout = heldout[:6] if args.smoke else heldout
    answer_tokens, eval_tokens = (16, 16) if args.smoke else (192, 256)
    print(f"{len(train)} training prompts, {len(heldout)} held out", flush=True)

    with stage("generate", timings):
        candidates = WORK / "candidates.jsonl"
        if not candidates.exists():
            generate_candidates(train, GenerationConfig(num_candidates=args.candidates, temperature=1.0,
                                                        max_new_tokens=answer_tokens, batch_size=8, seed=SEED),
                                candidates)
    with stage("label", timings):
        store = WORK / "prefs"
        if not store.exists():
            pairs, _ = candidate_pairs(read_candidates(candidates), "all", seed=SEED)
            records = [r for r in VerifierAnnotator(mode="loose").annotate(pairs) if r is not None]
            PreferenceStore(WORK / "prefs.tmp").append(records)
            (WORK / "prefs.tmp").rename(store)
        records = list(PreferenceStore(store).records())
    with stage("dpo", timings):
        run = WORK / "dpo"
        if not (run / "summary.json").exists():
            config = DPOTrainingConfig(output_dir=str(run), num_train_epochs=1, learning_rate=args.learning_rate,
                                       per_device_train_batch_size=4, max_length=512, save_steps=25,
                                       resume=run.exists(), seed=SEED)
            train_dpo(records, config)
        summary = json.loads((run / "summary.json").read_text())
    with stage("evaluate", timings):
        config = PolicyEvalConfig(max_new_tokens=eval_tokens, batch_size=8, n_bootstrap=2000, seed=SEED)
        report = evaluate_policy(str(run / "model"), heldout, WORK / "eval", reference_model="smollm2-135m-instruct",
                                 config=config)
    delta = report["verifier_delta"][HEADLINE]  # paired bootstrap over held-out prompts
    ref, pol = report["reference"]["verifier"], report["verifier"]
    labels = {key: sum(1 for r in records if r.label.value == key) for key in ("a", "b", "tie", "both_bad")}
    result = {
        "pass_rate_before": ref[HEADLINE]["value"],
        "pass_rate_after": pol[HEADLINE]["value"],
        "delta": delta["delta"],
        "ci_low": delta["ci_low"],
        "ci_high": delta["ci_high"],
        "n_heldout": pol["n_prompts"],
        "headline_metric": f"IFEval {HEADLINE.replace('_', '-level ')} pass rate on held-out prompts",
        "all_levels": {level: {"before": ref[level], "after": pol[level],
                               "delta": report["verifier_delta"][level]} for level in LEVELS},
        "train_prompts": len(train),
        "candidates_per_prompt": args.candidates,
        "verifier_labels": labels,
        "dpo_pairs": summary["pairs"],
        "dpo": "LoRA r16 all-linear, sigmoid loss, beta 0.1, 1 epoch, batch 4, lr "
               f"{args.learning_rate}, max_length 512, fp32 CPU",
        "timings_s": timings,
        "split": "IFEval input_data.jsonl, prompt-grouped, 25% held out, seed 0",
    }
    if args.smoke:
        print(json.dumps(result, indent=1, default=str))
        return
    shutil.copy(WORK / "eval" / "eval.png", ROOT / "benchmarks" / "results" / "dpo_quality.png")
    path = write_result("dpo_quality", result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1), f"-> {path}")


if __name__ == "__main__":
    main()
