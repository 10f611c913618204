"""Evaluate a policy: IFEval-style verifier pass rates and reward-model win rate against a reference, with CIs.

`evaluate_policy(model, prompts, out_dir, ...)` answers each prompt greedily (resumable: answers are cached in
`out_dir/answers-<name>.jsonl`), then reports
- **verifier pass rates** on prompts that carry IFEval instructions: prompt level (every instruction followed) and
  instruction level, each strict and loose, as IFEval defines them;
- **reward win rate** against a reference policy's answers to the same prompts: the share of prompts where the
  reward model scores the policy's answer higher (an exact tie counts half);
each with a 95% bootstrap interval over prompts (instruction level resamples whole prompts).
`paired_delta` compares two runs on the same prompts (e.g. before and after DPO) with a paired bootstrap interval.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policy.config import GenerationConfig, PolicyEvalConfig
from policy.generate import generate_candidates, read_candidates
from policy.prompts import PromptItem
from policy.rewards import user_prompt
from reward.ifeval import VerificationError, verify_response
from reward.protocols import RewardScorer
from rlhfkit.core.atomic import atomic_path, atomic_write_text
from rlhfkit.core.errors import InputError
from rlhfkit.core.stats import grouped_bootstrap_ci
from rlhfkit.models.causal_lm import newest_file_mtime_ns

LEVELS = ("prompt_strict", "prompt_loose", "instruction_strict", "instruction_loose")


def answer(model: str, prompts: Sequence[PromptItem], path: Path, config: PolicyEvalConfig) -> dict[str, str]:
    """Greedy answers by prompt key, generated once into `path` (reused and resumed on later calls).

    `path`'s sidecar `.settings.json` records the model and settings; answers made otherwise are never reused."""
    # A model retrained in the same folder is another model: its files' times are part of the settings.
    stamp = newest_file_mtime_ns(model)
    settings = {"model": model, "model_files_mtime": stamp, "max_new_tokens": config.max_new_tokens,
                "system_prompt": config.system_prompt, "chat_template": config.chat_template,
                "prompts": sorted(item.key for item in prompts)}
    sidecar = path.with_name(path.name + ".settings.json")
    if sidecar.exists() and json.loads(sidecar.read_text()) != settings:
        raise InputError(f"{path.parent} holds answers of another model, settings or prompt set "
                         f"({sidecar.name}); evaluate into another --out folder")
    atomic_write_text(sidecar, json.dumps(settings))
    if not path.exists():
        generation = GenerationConfig(model=model, num_candidates=1, temperature=0.0,
                                      max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                                      seed=config.seed, system_prompt=config.system_prompt, device=config.device,
                                      chat_template=config.chat_template,
                                      backend=config.backend)  # type: ignore[arg-type]
        generate_candidates(prompts, generation, path)
    return {row["key"]: row["candidates"][0] for row in read_candidates(path)}


def verify_answers(prompts: Sequence[PromptItem], answers: dict[str, str]) -> list[dict[str, Any]]:
    """Per verifiable prompt: key, instruction count, and strict / loose passes."""
    rows = []
    for item in prompts:
        if not item.verifiable or item.key not in answers:
            continue
        try:
            _, checks = verify_response(answers[item.key], item.metadata["instruction_id_list"],
                                        item.metadata["kwargs"], user_prompt(item.prompt))
        except VerificationError:
            continue
        rows.append({"key": item.key, "n": len(checks), "strict": sum(c.strict for c in checks),
                     "loose": sum(c.loose for c in checks),
                     "loose_by_instruction": [[c.instruction_id, c.loose] for c in checks]})
    return rows


def by_instruction(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Loose pass rate per IFEval instruction id, before and after, on the prompts both evaluated."""
    first = {row["key"]: row for row in before}
    counts: dict[str, list[int]] = {}
    for row in after:
        if row["key"] not in first:
            continue
        for (name, passed), (_, passed_before) in zip(row["loose_by_instruction"],
                                                      first[row["key"]]["loose_by_instruction"]):
            tally = counts.setdefault(name, [0, 0, 0])
            tally[0] += 1
            tally[1] += bool(passed_before)
            tally[2] += bool(passed)
    return {name: {"n": n, "before": b / n, "after": a / n} for name, (n, b, a) in sorted(counts.items())}


def plot_by_instruction(table: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Horizontal bars: each instruction type's pass rate before and after."""
    if not table:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    ys = np.arange(len(names))
    figure, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.2))
    ax.barh(ys + 0.2, [table[n]["before"] for n in names], 0.4, label="before", color="#9aa5b8")
    ax.barh(ys - 0.2, [table[n]["after"] for n in names], 0.4, label="after", color="#1a73e8")
    ax.set_yticks(ys, [f"{n.split(':')[-1]} ({table[n]['n']})" for n in names])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of held-out prompts that follow it (loose)",
           title="IFEval pass rate by instruction type (prompts per type)")
    ax.legend(loc="lower right")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path


def _estimate(values: Sequence[float], groups: Sequence[Any], config: PolicyEvalConfig) -> dict[str, float]:
    low, high = grouped_bootstrap_ci(values, groups, n_bootstrap=config.n_bootstrap, seed=config.seed)
    return {"value": float(np.mean(values)), "ci_low": low, "ci_high": high}


def pass_rates(rows: Sequence[dict[str, Any]], config: PolicyEvalConfig) -> dict[str, Any]:
    if not rows:
        return {"n_prompts": 0}
    keys = [r["key"] for r in rows]
    result: dict[str, Any] = {"n_prompts": len(rows), "n_instructions": sum(r["n"] for r in rows)}
    for mode in ("strict", "loose"):
        result[f"prompt_{mode}"] = _estimate([float(r[mode] == r["n"]) for r in rows], keys, config)
        per_instruction = [float(i < r[mode]) for r in rows for i in range(r["n"])]
        result[f"instruction_{mode}"] = _estimate(per_instruction, [r["key"] for r in rows for _ in range(r["n"])],
                                                  config)
    return result


def win_rate(scorer: RewardScorer, prompts: Sequence[PromptItem], answers: dict[str, str],
             reference: dict[str, str], config: PolicyEvalConfig) -> dict[str, Any]:
    items = [item for item in prompts if item.key in answers and item.key in reference]
    if not items:
        return {"n_prompts": 0}
    shown = [user_prompt(item.prompt) for item in items]
    rewards = scorer.score(shown + shown, [answers[i.key] for i in items] + [reference[i.key] for i in items])
    ours, theirs = np.array(rewards[: len(items)]), np.array(rewards[len(items):])
    wins = np.where(ours > theirs, 1.0, np.where(ours == theirs, 0.5, 0.0))
    return {"n_prompts": len(items), **_estimate(wins, [i.key for i in items], config),
            "mean_reward": float(ours.mean()), "mean_reward_reference": float(theirs.mean())}


def paired_delta(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]], level: str = "prompt_loose",
                 config: PolicyEvalConfig | None = None) -> dict[str, float]:
    """after - before on the prompts both evaluated, with a paired bootstrap interval over prompts.

    The estimate is exactly the difference of the two pass rates at `level` on those prompts: prompt level weighs
    every prompt alike, instruction level every instruction (a prompt's change counts once per instruction)."""
    config = config or PolicyEvalConfig()
    mode = level.split("_")[1]
    first = {r["key"]: r for r in before}
    common = [r for r in after if r["key"] in first]
    if not common:
        raise InputError("the two evaluations share no prompt")
    values, groups = [], []
    for row in common:
        old = first[row["key"]]
        if level.startswith("prompt"):
            values.append(float(row[mode] == row["n"]) - float(old[mode] == old["n"]))
            groups.append(row["key"])
        else:  # one value per instruction: the prompt's change in passed instructions, spread over them
            values += [(row[mode] - old[mode]) / row["n"]] * row["n"]
            groups += [row["key"]] * row["n"]
    estimate = _estimate(values, groups, config)
    return {"delta": estimate["value"], "ci_low": estimate["ci_low"], "ci_high": estimate["ci_high"],
            "n": len(common)}


def evaluate_policy(model: str, prompts: Sequence[PromptItem], out_dir: str | Path, *,
                    reference_model: str | None = None, reward_model: RewardScorer | None = None,
                    config: PolicyEvalConfig | None = None) -> dict[str, Any]:
    """Answer, verify and (with a reference and a reward model) compare; writes `eval.json` and `eval.png`."""
    config = config or PolicyEvalConfig()
    if not prompts:
        raise InputError("no prompts to evaluate on")
    if reward_model is not None and reference_model is None:
        raise InputError("a reward win rate needs a reference policy to compare against (--reference)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    answers = answer(model, prompts, out / "answers-policy.jsonl", config)
    rows = verify_answers(prompts, answers)
    report: dict[str, Any] = {"model": model, "n_prompts": len(prompts), "verifier": pass_rates(rows, config)}
    if reference_model is not None:
        reference = answer(reference_model, prompts, out / "answers-reference.jsonl", config)
        reference_rows = verify_answers(prompts, reference)
        report["reference"] = {"model": reference_model, "verifier": pass_rates(reference_rows, config)}
        if rows and reference_rows:
            report["verifier_delta"] = {level: paired_delta(reference_rows, rows, level, config)
                                        for level in LEVELS}
            report["by_instruction"] = by_instruction(reference_rows, rows)
            plot_by_instruction(report["by_instruction"], out / "by_instruction.png")
        if reward_model is not None:
            report["win_rate"] = win_rate(reward_model, prompts, answers, reference, config)
    atomic_write_text(out / "per_prompt.json", json.dumps(rows, indent=1))
    atomic_write_text(out / "eval.json", json.dumps(report, indent=1))
    plot_eval(report, out / "eval.png")
    return report


def plot_eval(report: dict[str, Any], path: Path) -> Path | None:
    """Pass rates (policy beside reference) with their intervals, and the win rate."""
    verifier = report.get("verifier", {})
    if not verifier.get("n_prompts"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("policy", verifier)] + ([("reference", report["reference"]["verifier"])]
                                     if "reference" in report and report["reference"]["verifier"].get("n_prompts")
                                     else [])
    figure, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(runs)
    for index, (name, rates) in enumerate(runs):
        xs = np.arange(len(LEVELS)) + index * width
        values = [rates[level]["value"] for level in LEVELS]
        errors = [[v - rates[level]["ci_low"] for v, level in zip(values, LEVELS)],
                  [rates[level]["ci_high"] - v for v, level in zip(values, LEVELS)]]
        ax.bar(xs, values, width, yerr=errors, capsize=3, label=name)
    ax.set_xticks(np.arange(len(LEVELS)) + width * (len(runs) - 1) / 2, [level.replace("_", "\n") for level in LEVELS])
    title = f"IFEval pass rate, {verifier['n_prompts']} prompts (95% CI)"
    if "win_rate" in report and report["win_rate"].get("n_prompts"):
        w = report["win_rate"]
        title += f"; reward win rate {w['value']:.2f} [{w['ci_low']:.2f}, {w['ci_high']:.2f}]"
    ax.set(ylim=(0, 1), ylabel="share passed", title=title)
    ax.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path
