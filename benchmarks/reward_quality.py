"""Reward-model quality on Anthropic HH-RLHF helpful-base test pairs: rlhfkit's default recipe vs plain TRL.

    .venv/bin/python benchmarks/reward_quality.py            # ~1.5 h on a 2-core CPU; stages resume

Both train MiniLM (all-MiniLM-L6-v2, bundled) on the same prompt-grouped 80/20 split (seed 0) and are evaluated on
the same held-out pairs with `reward.evaluate` (accuracy, bootstrap CI by prompt group, calibration).

- baseline: a plain TRL `RewardTrainer` on the raw HH transcripts (TRL's implicit-prompt text format), max_length
  512, 2 epochs, every other setting TRL's default. Two changes are needed just to run: MiniLM has no EOS token and
  TRL crashes without one (`eos_token="[SEP]"`), and TRL defaults to bf16, which a CPU cannot do (`bf16=False`).
  TRL drops pairs longer than 512 tokens.
- rlhfkit: `reward.train.train_reward_model` with `RewardTrainingConfig()` defaults (MiniLM mean-pooled as it was
  trained, the head started from a linear probe, pairs truncated to 256 tokens keeping the latest turns, lr 3e-5,
  2 epochs). `--set FIELD=VALUE` trains a recipe experiment in its own folder; its result.json stays there and the
  default run's JSON lists every experiment evaluated so far (`recipe_experiments`).

Writes benchmarks/results/reward_quality.json (heldout_accuracy, ci_low, ci_high, baseline_trl_accuracy, ece,
n_heldout, machine, ...) and benchmarks/results/reward_quality.png. Needs ../shared/data (read in place).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HH = ROOT.parent / "shared" / "data" / "hh-rlhf-helpful-base" / "test.jsonl.gz"
WORK = ROOT / "benchmarks" / ".work" / "reward_quality"
SEED = 0


def split_records():
    from preference.importers import read_preferences
    from preference.split import split_by_prompt

    records = [record for result in read_preferences(HH) for record in result.records]
    parts = split_by_prompt(records, {"train": 0.8, "test": 0.2}, seed=SEED)
    return parts["train"], parts["test"]


def train_baseline(train_records) -> Path:
    """Plain TRL: raw transcripts of the train split, TRL defaults, max_length 512, 2 epochs."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from reward.meta import RewardMeta
    from rlhfkit.models.registry import resolve_model

    out = WORK / "baseline"
    if (out / "model" / "rlhfkit_reward.json").exists():
        return out / "model"
    lines = gzip.open(HH, "rt", encoding="utf-8").read().splitlines()
    rows = [json.loads(lines[int(record.item) - 1]) for record in train_records]
    path = resolve_model("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    args = RewardConfig(output_dir=str(out / "checkpoints"), max_length=512, num_train_epochs=2, seed=SEED,
                        eos_token="[SEP]", bf16=False, report_to=[], save_strategy="no")
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer,
                            train_dataset=Dataset.from_list([{"chosen": r["chosen"], "rejected": r["rejected"]}
                                                             for r in rows]))
    kept = len(trainer.train_dataset)
    started = time.time()
    trainer.train()
    trainer.model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    # Scoring formats pairs with rlhfkit's encoder pair format; for the baseline, score what it was trained on:
    # the transcript text. The benchmark therefore evaluates the baseline with its own format (see evaluate()).
    RewardMeta(backbone="minilm-l6", max_length=512, extra={"train_pairs_after_trl_filter": kept,
                                                           "train_pairs_given": len(rows),
                                                           "seconds": time.time() - started}).save(out / "model")
    return out / "model"


def rlhfkit_config(overrides: dict):
    """The default recipe, with any overrides given on the command line (recorded in the JSON)."""
    from reward.config import RewardTrainingConfig

    name = "rlhfkit" + "".join(f"-{key}={value}" for key, value in sorted(overrides.items()))
    out = WORK / name
    return RewardTrainingConfig(output_dir=str(out), seed=SEED, resume=out.exists(), **overrides)


def train_rlhfkit(train_records, overrides: dict) -> Path:
    from reward.train import train_reward_model

    config = rlhfkit_config(overrides)
    out = Path(config.output_dir)
    if (out / "model" / "rlhfkit_reward.json").exists():
        return out / "model"
    started = time.time()
    result = train_reward_model(train_records, config)
    (out / "seconds.txt").write_text(str(time.time() - started))
    return result.model_dir


class TranscriptScorer:
    """Scores the baseline the way it was trained: TRL's text format, the whole transcript plus [SEP]."""

    def __init__(self, folder: Path):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()

    def score(self, prompts, responses):
        texts = []
        for prompt, response in zip(prompts, responses):
            turns = [prompt] if isinstance(prompt, str) else prompt
            transcript = "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}"
                                 for m in turns) if not isinstance(prompt, str) else f"\n\nHuman: {prompt}"
            texts.append(f"{transcript}\n\nAssistant: {response}[SEP]")
        scores = []
        with self.torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = self.tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=512,
                                       return_tensors="pt")
                scores += self.model(**batch).logits[:, 0].tolist()
        return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["all", "baseline", "rlhfkit", "evaluate"], default="all")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="Override a RewardTrainingConfig field for a recipe experiment (own work folder).")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false", "null") else value
    if not HH.exists():
        sys.exit(f"{HH} not found: this benchmark reads the shared HH-RLHF test pairs in place")
    import torch

    from benchmarks.machine import usable_cpus

    torch.set_num_threads(usable_cpus())
    train, test = split_records()
    print(f"split: {len(train)} train, {len(test)} held-out judgments", flush=True)
    if args.stage in ("all", "rlhfkit"):
        train_rlhfkit(train, overrides)
    if args.stage in ("all", "baseline"):
        train_baseline(train)
    if args.stage in ("all", "evaluate"):
        evaluate(test, overrides)


def paired_difference(ours: list[float], base: list[float]) -> tuple[float, list[float]]:
    """Accuracy difference on the same held-out pairs, with a 95% paired bootstrap interval.

    Both margin lists come from `evaluate` over the same records, so they are in the same pair order. Each HH prompt
    holds one pair here (n_prompt_groups == n_heldout), so resampling pairs is resampling prompt groups.
    """
    from rlhfkit.core.stats import grouped_bootstrap_ci

    def correct(margins):
        return [1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins]

    if len(ours) != len(base):
        raise ValueError(f"the two evaluations saw different pairs ({len(ours)} vs {len(base)})")
    deltas = [a - b for a, b in zip(correct(ours), correct(base))]
    low, high = grouped_bootstrap_ci(deltas, list(range(len(deltas))), n_bootstrap=2000, seed=SEED)
    return sum(deltas) / len(deltas), [low, high]


def trained_recipe(folder: Path) -> str:
    """The settings the model in `folder` was trained with, from its run's config.json (not today's defaults)."""
    saved = json.loads((folder / "config.json").read_text())
    # Runs from before these fields existed trained the way their absence meant: the [CLS] head, a random start.
    saved.setdefault("pooling", "model")
    saved.setdefault("head_init", "random")
    return (f"{saved['model']}, max_length {saved['max_length']} (truncate, keep latest turns), lr "
            f"{saved['learning_rate']:g}, {saved['num_train_epochs']:g} epochs, batch "
            f"{saved['per_device_train_batch_size']}, pooling {saved['pooling']}, head_init {saved['head_init']}, "
            f"center_rewards_coefficient {saved['center_rewards_coefficient']}, gradient_checkpointing "
            f"{saved.get('gradient_checkpointing', True)}")


def experiments() -> list[dict]:
    """Every recipe experiment evaluated so far (WORK/rlhfkit-*/result.json), for the record."""
    rows = []
    for path in sorted(WORK.glob("rlhfkit-*/result.json")):
        data = json.loads(path.read_text())
        rows.append({"run": path.parent.name, **{key: data[key] for key in (
            "heldout_accuracy", "ci_low", "ci_high", "ece", "accuracy_minus_baseline", "accuracy_minus_baseline_ci",
            "recipe") if key in data}})
    return rows


def evaluate(test, overrides: dict) -> None:
    from benchmarks.machine import write_result
    from reward.evaluate import evaluate as evaluate_model
    from reward.model import load_reward_model

    config = rlhfkit_config(overrides)
    ours = evaluate_model(load_reward_model(Path(config.output_dir) / "model"), test, n_bootstrap=2000, seed=SEED)
    base = evaluate_model(TranscriptScorer(WORK / "baseline" / "model"), test, n_bootstrap=2000, seed=SEED)
    folder = ROOT / "benchmarks" / "results" if not overrides else Path(config.output_dir)
    ours.plot(folder / "reward_quality.png")
    o, b = ours.to_dict(), base.to_dict()
    difference, difference_ci = paired_difference(ours.margins, base.margins)
    baseline_meta = json.loads((WORK / "baseline" / "model" / "rlhfkit_reward.json").read_text())["extra"]
    result = {
        "heldout_accuracy": o["accuracy"], "ci_low": o["accuracy_ci"][0], "ci_high": o["accuracy_ci"][1],
        "baseline_trl_accuracy": b["accuracy"], "baseline_ci_low": b["accuracy_ci"][0],
        "baseline_ci_high": b["accuracy_ci"][1],
        "ece": o["calibration"]["ece"], "baseline_ece": b["calibration"]["ece"], "n_heldout": o["counts"]["decisive"],
        "accuracy_minus_baseline": difference, "accuracy_minus_baseline_ci": difference_ci,
        "recipe": (f"RewardTrainingConfig({', '.join(f'{k}={v!r}' for k, v in sorted(overrides.items()))}): "
                   + trained_recipe(Path(config.output_dir))),
        "baseline": "plain TRL RewardTrainer, minilm-l6, max_length 512, 2 epochs, TRL defaults, eos_token=[SEP], "
                    "bf16=False (CPU)",
        "baseline_train_pairs_after_trl_filter": baseline_meta["train_pairs_after_trl_filter"],
        "baseline_train_pairs_given": baseline_meta["train_pairs_given"],
        "split": "prompt-grouped 80/20, seed 0, HH-RLHF helpful-base test split",
        "rlhfkit_eval": o, "baseline_eval": b,
    }
    if overrides:  # a recipe experiment: kept beside its model, listed in the default run's JSON
        from rlhfkit.core.atomic import atomic_write_text

        atomic_write_text(folder / "result.json", json.dumps(result, indent=1))
        print(f"experiment result: {folder / 'result.json'}")
    else:
        result["recipe_experiments"] = experiments()
        write_result("reward_quality", result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1))


if __name__ == "__main__":
    main()
