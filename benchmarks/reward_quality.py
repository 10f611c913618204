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

PandaLM (`--stage pandalm`, ~15 min): the same two recipes on PandaLM's human test set (999 pairs, three
annotators each), split by prompt 80/20 (seed 0). Both train on the train split's majority labels (the pairs
`reward.train` trains on; the plain-TRL baseline gets them as TRL implicit-prompt transcripts); held-out accuracy is
reported by agreement level (all three annotators agree, or two of three), since pairs people agree on should be
easier for a reward model as well.

Bars (`bars`, recomputed by every stage from the results it has): `non_inferior_to_trl` (the paired 95% interval of
rlhfkit minus plain TRL lies above -0.02) per dataset, `ece` and `baseline_ece`, and on PandaLM
`unanimous_minus_split` (accuracy on unanimous held-out pairs minus two-of-three pairs, 95% bootstrap interval).

Writes benchmarks/results/reward_quality.json (heldout_accuracy, ci_low, ci_high, baseline_trl_accuracy, ece,
n_heldout, bars, pandalm, machine, ...) and benchmarks/results/reward_quality.png. Needs ../shared/data (read in
place). The HH fields and `machine` are the HH run's; `pandalm` carries the machine it ran on.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HH = ROOT.parent / "shared" / "data" / "hh-rlhf-helpful-base" / "test.jsonl.gz"
PANDALM = ROOT.parent / "shared" / "data" / "pandalm" / "testset-v1.json"
NON_INFERIORITY_MARGIN = -0.02
WORK = ROOT / "benchmarks" / ".work" / "reward_quality"
SEED = 0
RESULT = ROOT / "benchmarks" / "results" / "reward_quality.json"


def split_records(path: Path = HH):
    from preference.importers import read_preferences
    from preference.split import split_by_prompt

    records = [record for result in read_preferences(path) for record in result.records]
    parts = split_by_prompt(records, {"train": 0.8, "test": 0.2}, seed=SEED)
    return parts["train"], parts["test"]


def transcript(prompt) -> str:
    """TRL's implicit-prompt text of a prompt: HH's own transcript layout."""
    turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in turns)


def majority_transcripts(records) -> list[dict]:
    """The pairs rlhfkit's trainer trains on (majority of the judgments, ties dropped), as TRL transcripts."""
    from preference.export import ExportPolicy, trainable_pairs
    from reward.config import RewardTrainingConfig

    config = RewardTrainingConfig()
    policy = ExportPolicy(ties=config.ties, both_bad=config.both_bad, aggregate=config.aggregate,
                          min_agreement=config.min_agreement)
    pairs, _ = trainable_pairs(records, policy, "a reward model")
    return [{side: f"{transcript(p['prompt'])}\n\nAssistant: {p[side]}" for side in ("chosen", "rejected")}
            for p in pairs]


def train_baseline(train_records, out: Path | None = None, rows: list[dict] | None = None) -> Path:
    """Plain TRL: raw transcripts of the train split (`rows`, HH's own by default), TRL defaults, max_length 512,
    2 epochs."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from reward.meta import RewardMeta
    from rlhfkit.models.registry import resolve_model

    out = out or WORK / "baseline"
    if (out / "model" / "rlhfkit_reward.json").exists():
        return out / "model"
    if rows is None:
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


def rlhfkit_config(overrides: dict, work: Path = WORK):
    """The default recipe, with any overrides given on the command line (recorded in the JSON)."""
    from reward.config import RewardTrainingConfig

    name = "rlhfkit" + "".join(f"-{key}={value}" for key, value in sorted(overrides.items()))
    out = work / name
    return RewardTrainingConfig(output_dir=str(out), seed=SEED, resume=out.exists(), **overrides)


def train_rlhfkit(train_records, overrides: dict, work: Path = WORK) -> Path:
    from reward.train import train_reward_model

    config = rlhfkit_config(overrides, work)
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
        texts = [f"{transcript(prompt)}\n\nAssistant: {response}[SEP]" for prompt, response in zip(prompts, responses)]
        scores = []
        with self.torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = self.tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=512,
                                       return_tensors="pt")
                scores += self.model(**batch).logits[:, 0].tolist()
        return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", choices=["all", "baseline", "rlhfkit", "evaluate", "pandalm"], default="all",
                        help="all: the HH stages (train both, evaluate); pandalm: the PandaLM comparison.")
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
    if args.stage == "pandalm":
        if not PANDALM.exists():
            sys.exit(f"{PANDALM} not found: this stage reads the shared PandaLM pairs in place")
        pandalm(overrides)
        return
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
        committed = RESULT.exists() and json.loads(RESULT.read_text())
        if committed and "pandalm" in committed:
            result["pandalm"] = committed["pandalm"]
        result["bars"] = bars(result)
        write_result("reward_quality", result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=1))


def non_inferior(difference_ci: list[float]) -> bool:
    return difference_ci[0] > NON_INFERIORITY_MARGIN


def bars(result: dict) -> dict:
    """The bars of the issue, from the fields measured (each dataset's own run)."""
    out = {"non_inferiority_margin": NON_INFERIORITY_MARGIN,
           "hh": {"non_inferior_to_trl": non_inferior(result["accuracy_minus_baseline_ci"]),
                  "accuracy_minus_baseline_ci": result["accuracy_minus_baseline_ci"],
                  "ece": result["ece"], "baseline_ece": result["baseline_ece"]}}
    panda = result.get("pandalm")
    if panda:
        out["pandalm"] = {"non_inferior_to_trl": non_inferior(panda["accuracy_minus_baseline_ci"]),
                          "accuracy_minus_baseline_ci": panda["accuracy_minus_baseline_ci"],
                          "ece": panda["ece"], "baseline_ece": panda["baseline_ece"],
                          "unanimous_minus_split": panda["unanimous_minus_split"]}
    # Whether a 0.02 margin can be shown at all: the interval's half-width at this many held-out pairs.
    out["hh"]["interval_half_width"] = (result["accuracy_minus_baseline_ci"][1]
                                        - result["accuracy_minus_baseline_ci"][0]) / 2
    return out


def level_difference(levels: list[dict], high: str, low: str) -> dict:
    """Accuracy on agreement level `high` minus level `low` (different pairs, so unpaired), with the 95% normal
    interval of a difference of two proportions."""
    rows = {row["name"]: row for row in levels}
    a, b = rows[high], rows[low]
    if not a["n"] or not b["n"]:
        return {"delta": None, "ci_low": None, "ci_high": None, "n": [a["n"], b["n"]], "levels": [high, low]}
    p, q = a["correct"] / a["n"], b["correct"] / b["n"]
    half = 1.96 * math.sqrt(p * (1 - p) / a["n"] + q * (1 - q) / b["n"])
    return {"delta": p - q, "ci_low": p - q - half, "ci_high": p - q + half, "n": [a["n"], b["n"]],
            "levels": [high, low]}


def pandalm(overrides: dict) -> None:
    """Both recipes on PandaLM's three-annotator pairs; accuracy by agreement level; bars into the JSON. With
    `overrides`, a recipe experiment against the same baseline, listed under `pandalm.recipe_experiments`."""
    from benchmarks.machine import machine_info
    from reward.evaluate import evaluate as evaluate_model
    from reward.model import load_reward_model
    from rlhfkit.core.atomic import atomic_write_text

    work = WORK / "pandalm"
    train, test = split_records(PANDALM)
    print(f"PandaLM split: {len(train)} train, {len(test)} held-out judgments", flush=True)
    ours_dir = train_rlhfkit(train, overrides, work)
    rows = majority_transcripts(train)
    base_dir = train_baseline(train, work / "baseline", rows)
    ours = evaluate_model(load_reward_model(ours_dir), test, n_bootstrap=2000, seed=SEED)
    base = evaluate_model(TranscriptScorer(base_dir), test, n_bootstrap=2000, seed=SEED)
    o, b = ours.to_dict(), base.to_dict()
    difference, difference_ci = paired_difference(ours.margins, base.margins)
    result = json.loads(RESULT.read_text())
    recipe = (f"RewardTrainingConfig({', '.join(f'{k}={v!r}' for k, v in sorted(overrides.items()))}): "
              + trained_recipe(ours_dir.parent))
    if overrides:
        row = {"run": ours_dir.parent.name, "heldout_accuracy": o["accuracy"], "ci_low": o["accuracy_ci"][0],
               "ci_high": o["accuracy_ci"][1], "ece": o["calibration"]["ece"],
               "accuracy_minus_baseline": difference, "accuracy_minus_baseline_ci": difference_ci,
               "recipe": recipe, "machine": machine_info()}
        section = result["pandalm"]
        section["recipe_experiments"] = [r for r in section.get("recipe_experiments", [])
                                         if r["run"] != row["run"]] + [row]
        print(json.dumps({k: v for k, v in row.items() if k != "machine"}, indent=1))
    else:
        seconds = {"rlhfkit": float((ours_dir.parent / "seconds.txt").read_text()),
                   "baseline": json.loads((base_dir / "rlhfkit_reward.json").read_text())["extra"]["seconds"]}
        section = {
            "dataset": f"{PANDALM.relative_to(ROOT.parent)}: prompt-grouped 80/20 split, seed 0; train on majority "
                       "labels, held-out judged by all three annotators",
            "train_pairs": len(rows), "n_heldout": o["counts"]["decisive"], "recipe": recipe,
            "baseline": "plain TRL RewardTrainer on the same majority-label pairs as HH-style transcripts, "
                        "minilm-l6, max_length 512, 2 epochs, TRL defaults, eos_token=[SEP], bf16=False (CPU)",
            "heldout_accuracy": o["accuracy"], "ci_low": o["accuracy_ci"][0], "ci_high": o["accuracy_ci"][1],
            "baseline_trl_accuracy": b["accuracy"], "baseline_ci_low": b["accuracy_ci"][0],
            "baseline_ci_high": b["accuracy_ci"][1],
            "accuracy_minus_baseline": difference, "accuracy_minus_baseline_ci": difference_ci,
            "ece": o["calibration"]["ece"], "baseline_ece": b["calibration"]["ece"],
            "agreement_levels": o["agreement_levels"], "baseline_agreement_levels": b["agreement_levels"],
            "unanimous_minus_split": level_difference(o["agreement_levels"], "1.0", "[0.66, 1)"),
            "baseline_unanimous_minus_split": level_difference(b["agreement_levels"], "1.0", "[0.66, 1)"),
            "train_seconds": {k: round(v, 1) for k, v in seconds.items()},
            "recipe_experiments": result.get("pandalm", {}).get("recipe_experiments", []),
            "machine": machine_info(),
        }
        result["pandalm"] = section
        print(json.dumps({k: v for k, v in section.items() if not isinstance(v, dict | list)}, indent=1))
    # The HH fields and their `machine` stay the HH run's; this section carries its own machine.
    result["bars"] = bars(result)
    atomic_write_text(RESULT, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["bars"], indent=1))


if __name__ == "__main__":
    main()
