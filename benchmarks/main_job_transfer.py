"""Does what the default job (`make run`) learned transfer to prompts it never trained on?

    .venv/bin/python benchmarks/main_job_transfer.py [--workdir runs/main] [--limit N]

Reads a finished default run (its config, policies, reward model and found instruction) and answers IFEval's
`../shared/data/ifeval/input_data.jsonl` (541 prompts written by others, read in place; the job trains on rlhfkit's
built-in prompts only) greedily with the same answer length as the job's evaluation:
- the starting policy and the updated one: IFEval's four pass rates, their paired changes (2,000 paired bootstrap
  resamples over prompts) and the reward model's win rate of after over before;
- the updated policy under the instruction the search found and under its start instruction: the paired change.

The headline, as in the job, is the instruction-level loose pass rate. Answers are cached under
benchmarks/.work/main_job_transfer (a rerun resumes). Writes benchmarks/results/main_job_transfer.json
(pass_rate_before, pass_rate_after, delta, ci_low, ci_high, n_prompts, win_rate, instruction, machine, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if (ROOT / ".venv-vllm").is_dir():  # the engine `make setup` installs, as `make run` uses it
    os.environ.setdefault("RLHFKIT_VLLM_VENV", str(ROOT / ".venv-vllm"))

IFEVAL = ROOT.parent / "shared" / "data" / "ifeval" / "input_data.jsonl"
WORK = ROOT / "benchmarks" / ".work" / "main_job_transfer"
HEADLINE = "instruction_loose"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "main", help="A finished default run.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N IFEval prompts (default: all).")
    args = parser.parse_args()

    from benchmarks.machine import write_result
    from policy.evaluate import PolicyEvalConfig, answer, evaluate_policy, paired_delta, pass_rates, verify_answers
    from policy.prompts import read_prompts
    from reward.model import load_reward_model
    from rlhfkit.models.vllm_server import stop_all
    from rlhfkit.pipeline.config import PipelineConfig

    work = args.workdir.resolve()
    manifest = json.loads((work / "manifest.json").read_text())
    missing = [name for name in ("update", "evaluate", "instructions") if name not in manifest["stages"]]
    if missing:
        sys.exit(f"{work}: the run has not finished stage(s) {', '.join(missing)}; run `make run` first")
    config = PipelineConfig.model_validate(manifest["config"])  # the settings the run was made with
    prompts = read_prompts(IFEVAL)[: args.limit]
    eval_config = PolicyEvalConfig(max_new_tokens=config.evaluate.max_new_tokens, backend=config.generate.backend,
                                   system_prompt=config.policy.system_prompt, n_bootstrap=config.evaluate.n_bootstrap,
                                   seed=config.seed)
    out = WORK / f"limit-{args.limit or 'all'}"
    started = time.perf_counter()
    try:
        report = evaluate_policy(str(work / "update" / "model"), prompts, out / "policies",
                                 reference_model=config.policy.model, reward_model=load_reward_model(
                                     work / "reward" / "model"), config=eval_config)
        search = json.loads((work / "instructions" / "result.json").read_text())
        instruction: dict = {"found": search["best_instruction"], "start": search["start_instruction"]}
        if search["best_instruction"] != search["start_instruction"]:
            rows = {}
            for name in ("start", "found"):
                settings = PolicyEvalConfig(**{**eval_config.__dict__, "system_prompt": instruction[name],
                                               "max_new_tokens": config.instructions.max_new_tokens})
                answers = answer(str(work / "update" / "model"), prompts, out / f"instruction-{name}.jsonl", settings)
                rows[name] = verify_answers(prompts, answers)
            delta = paired_delta(rows["start"], rows["found"], HEADLINE, eval_config)
            instruction.update({f"pass_rate_{name}": pass_rates(value, eval_config)[HEADLINE]["value"]
                                for name, value in rows.items()})
            instruction.update({"delta": delta["delta"], "ci_low": delta["ci_low"], "ci_high": delta["ci_high"]})
        else:
            instruction["note"] = "the search kept its start instruction: nothing to compare"
    finally:
        stop_all()
    before, after = report["reference"]["verifier"], report["verifier"]
    delta = report["verifier_delta"][HEADLINE]
    win = report.get("win_rate", {})
    result = {
        "headline_metric": "IFEval instruction-level loose pass rate, greedy answers",
        "pass_rate_before": before[HEADLINE]["value"], "pass_rate_after": after[HEADLINE]["value"],
        "delta": delta["delta"], "ci_low": delta["ci_low"], "ci_high": delta["ci_high"], "n_prompts": delta["n"],
        "win_rate": win.get("value"), "win_rate_ci": [win.get("ci_low"), win.get("ci_high")],
        "all_levels": {level: {"before": before[level]["value"], "after": after[level]["value"],
                               **report["verifier_delta"][level]} for level in report["verifier_delta"]},
        "instruction": instruction,
        "job": {"workdir": str(work), "policy": config.policy.model, "update": config.update.method,
                "timings_s": {name: entry["seconds"] for name, entry in manifest["stages"].items()}},
        "data": f"{IFEVAL.relative_to(ROOT.parent)} ({len(prompts)} prompts), none seen in training",
        "answer_tokens": config.evaluate.max_new_tokens, "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_result("main_job_transfer", result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("all_levels", "job")}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
