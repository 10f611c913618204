"""Label efficiency of active selection: how many labels a reward model needs, chosen at random or by the model.

    .venv/bin/python benchmarks/label_efficiency.py [--seeds 10] [--start 200] [--step 200] [--rounds 5]

What it measures. Anthropic HH-RLHF helpful-base test pairs (`../shared/data/hh-rlhf-helpful-base`, read in place)
are split by prompt 80/20 (seed 0, the split of `benchmarks/reward_quality.py`): the 80% is the unlabeled pool, the
20% the fixed held-out set. Each seed starts from `start` random labels and runs `rounds` rounds of
retrain -> select `step` more pairs -> reveal their labels (a simulated annotator: the dataset's own choice), per
strategy, with `annotation.select.select_pairs` choosing:

- `random`: a seeded uniform sample of the unlabeled pool (the baseline);
- `uncertainty`: the pairs whose reward margin is nearest zero under the reward model of this round;
- `disagreement`: the pairs an ensemble of 4 reward models (each fitted on a bootstrap resample of the labels so
  far) disagrees on most (opposite-sign margins first, then the spread of margins).

The reward model. Each round refits the reward head on the labels so far, on frozen MiniLM features (bundled
all-MiniLM-L6-v2, mean-pooled, pairs truncated to 256 tokens keeping the latest turns: `RewardTrainingConfig()`'s
backbone and text), with `reward.linear_probe.fit_pairwise_probe`, the pairwise logistic fit rlhfkit's trainer
uses to start a head with `head_init="linear_probe"`. It is the head only, not a fine-tuned backbone: 270 refits
would take days on 2 cores fine-tuned, seconds as probes. The features are computed once and cached in
benchmarks/.work/label_efficiency/.

Reported per strategy and round: held-out accuracy, mean over seeds, with a 95% bootstrap interval over held-out
prompt groups (of the seed-averaged correctness) and the per-seed values; at the final round, each strategy's paired
difference from random over the same held-out pairs (seed-averaged, bootstrap by prompt group);
`labels_saved_at_random_final`: for the best strategy, 1 - (labels it needs to reach random's final mean accuracy,
interpolated between rounds) / (random's final label count); 0 when it never reaches it. The full pool's accuracy
(every label) is the ceiling. The same is repeated with 50 + 50 x 5 labels (`small_budget`), where the head is far
from that ceiling.

PandaLM (`pandalm`): the same on PandaLM's human test set (`../shared/data/pandalm`, three annotators per pair,
majority labels, ties dropped), split by prompt 80/20, from 100 random labels with 4 rounds of 100 (its pool is
about 630 pairs).

Backbones (`backbones`): the same head on the frozen features of each backbone in `--backbones` (default the
bundled SmolLM2-135M-Instruct as a decoder reward model, last-token features, its chat template) against MiniLM,
with every pool label (paired difference over the same held-out pairs) and on random samples of 200..1200 labels,
with the time to compute the features. Writes benchmarks/results/label_efficiency.json (+ `machine`) and
benchmarks/results/label_efficiency.png (accuracy against labels per strategy, with the seed range).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from benchmarks.reward_quality import HH, PANDALM, split_records  # noqa: E402

NAME = "label_efficiency"
WORK = ROOT / "benchmarks" / ".work" / NAME
STRATEGIES = ("random", "uncertainty", "disagreement")
ENSEMBLE = 4
N_BOOTSTRAP = 2000
BACKBONES = ("smollm2-135m-instruct",)  # bundled: a decoder reward model, last-token features
SMALL = (50, 50)  # start and step of the small-budget regime reported beside the 200 + 200 x 5
PANDALM_BUDGET = (100, 100, 4)  # start, step, rounds: PandaLM's train split holds ~630 majority-label pairs


def features(records: list[Any], cache: Path, backbone: str = "minilm-l6") -> dict[str, Any]:
    """Frozen head inputs of every trainable pair's chosen and rejected side under `backbone` (its pooling and text
    as `RewardTrainingConfig(model=backbone)` trains it), with its prompt, cached."""
    from preference.export import ExportPolicy, trainable_pairs
    from reward.config import RewardTrainingConfig
    from reward.data import _text
    from reward.linear_probe import head_inputs
    from reward.text import encode, flatten
    from reward.train import load_backbone, load_tokenizer_with_pad
    from rlhfkit.core.atomic import atomic_path
    from rlhfkit.models.registry import resolve_model

    if cache.exists():
        return torch.load(cache, weights_only=False)
    began = time.perf_counter()
    config = RewardTrainingConfig(model=backbone)
    path = resolve_model(config.model)
    tokenizer = load_tokenizer_with_pad(path)
    model = load_backbone(path, tokenizer, config.pooling).eval()
    policy = ExportPolicy(ties=config.ties, both_bad=config.both_bad, aggregate=config.aggregate,
                          min_agreement=config.min_agreement)
    pairs, _ = trainable_pairs(records, policy, "a reward model")
    sides = {side: [encode(tokenizer, p["prompt"], _text(p[side]), config.max_length).input_ids for p in pairs]
             for side in ("chosen", "rejected")}
    out = {"chosen": head_inputs(model, tokenizer, sides["chosen"]),
           "rejected": head_inputs(model, tokenizer, sides["rejected"]),
           "prompts": [flatten(p["prompt"]) for p in pairs],
           "texts": [(_text(p["chosen"]), _text(p["rejected"])) for p in pairs],
           "seconds": time.perf_counter() - began, "parameters": sum(p.numel() for p in model.parameters())}
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        torch.save(out, tmp)
    return out


class ProbeScorer:
    """A reward scorer over cached features: reward = features(prompt, response) @ weights."""

    def __init__(self, weights: torch.Tensor, table: dict[tuple[str, str], torch.Tensor]):
        self.weights, self.table = weights, table

    def score(self, prompts: list[str], responses: list[str]) -> list[float]:
        rows = torch.stack([self.table[(prompt, response)] for prompt, response in zip(prompts, responses,
                                                                                        strict=True)])
        return (rows @ self.weights).tolist()


def fit(pool: dict[str, Any], indices: list[int]) -> torch.Tensor:
    from reward.linear_probe import fit_pairwise_probe

    index = torch.as_tensor(indices)
    return fit_pairwise_probe(pool["chosen"][index], pool["rejected"][index])


def correct(test: dict[str, Any], weights: torch.Tensor) -> torch.Tensor:
    return ((test["chosen"] - test["rejected"]) @ weights > 0).float()


def run_seed(pool: dict[str, Any], test: dict[str, Any], strategy: str, seed: int, args: argparse.Namespace
             ) -> list[dict[str, Any]]:
    """One strategy's rounds from one seed's random start: per round, labels used and held-out correctness."""
    from annotation.select import select_pairs
    from preference.pairs import Pair

    n = len(pool["prompts"])
    table = {}
    for i, (chosen, rejected) in enumerate(pool["texts"]):
        table[(pool["prompts"][i], chosen)] = pool["chosen"][i]
        table[(pool["prompts"][i], rejected)] = pool["rejected"][i]
    rng = random.Random(seed)
    labeled = rng.sample(range(n), args.start)
    points = []
    for round_index in range(args.rounds + 1):
        weights = fit(pool, labeled)
        points.append({"round": round_index, "labels": len(labeled), "correct": correct(test, weights)})
        if round_index == args.rounds:
            break
        taken = set(labeled)
        rest = [i for i in range(n) if i not in taken]
        # The pool as an annotator sees it: a prompt and two responses; which is chosen stays hidden.
        candidates = [Pair(pool["prompts"][i], *pool["texts"][i]) for i in rest]
        if strategy == "random":
            scorers = None
        elif strategy == "uncertainty":
            scorers = [ProbeScorer(weights, table)]
        else:
            draw = random.Random(seed * 1000 + round_index)
            scorers = [ProbeScorer(fit(pool, [draw.choice(labeled) for _ in labeled]), table)
                       for _ in range(ENSEMBLE)]
        chosen = select_pairs(candidates, strategy, args.step, seed=seed * 1000 + round_index, scorers=scorers)
        where = {id(pair): i for pair, i in zip(candidates, rest, strict=True)}
        labeled += [where[id(selection.pair)] for selection in chosen]
    return points


def summarise(test: dict[str, Any], runs: dict[str, list[list[dict[str, Any]]]]) -> dict[str, Any]:
    from rlhfkit.core.stats import grouped_bootstrap_ci

    groups = test["prompts"]
    curves: dict[str, list[dict[str, Any]]] = {}
    for strategy, seeds in runs.items():
        curve = []
        for round_index in range(len(seeds[0])):
            stacked = torch.stack([seed[round_index]["correct"] for seed in seeds])
            mean = stacked.mean(0).tolist()
            low, high = grouped_bootstrap_ci(mean, groups, n_bootstrap=N_BOOTSTRAP, seed=0)
            curve.append({"labels": seeds[0][round_index]["labels"], "heldout_accuracy": sum(mean) / len(mean),
                          "ci_low": low, "ci_high": high,
                          "per_seed": [float(seed[round_index]["correct"].mean()) for seed in seeds]})
        curves[strategy] = curve
    final = {s: torch.stack([seed[-1]["correct"] for seed in seeds]).mean(0) for s, seeds in runs.items()}
    versus = {}
    for strategy in runs:
        if strategy == "random":
            continue
        diff = (final[strategy] - final["random"]).tolist()
        low, high = grouped_bootstrap_ci(diff, groups, n_bootstrap=N_BOOTSTRAP, seed=0)
        versus[strategy] = {"delta": sum(diff) / len(diff), "ci_low": low, "ci_high": high}
    return {"curves": curves, "final_minus_random": versus}


def labels_to_reach(curve: list[dict[str, Any]], target: float) -> float | None:
    """Labels at which the mean-accuracy curve first reaches `target`, linearly interpolated between rounds."""
    previous = None
    for point in curve:
        if point["heldout_accuracy"] >= target:
            if previous is None:
                return float(point["labels"])
            x0, y0 = previous["labels"], previous["heldout_accuracy"]
            x1, y1 = point["labels"], point["heldout_accuracy"]
            return x0 + (target - y0) * (x1 - x0) / (y1 - y0)
        previous = point
    return None


def experiment(pool: dict[str, Any], test: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Every strategy from `args.seeds` random starts: curves, final differences from random, labels saved."""
    runs = {strategy: [run_seed(pool, test, strategy, seed, args) for seed in range(args.seeds)]
            for strategy in STRATEGIES}
    summary = summarise(test, runs)
    curves = summary["curves"]
    target = curves["random"][-1]["heldout_accuracy"]
    random_labels = curves["random"][-1]["labels"]
    needs = {s: labels_to_reach(curves[s], target) for s in STRATEGIES if s != "random"}
    best = min(needs, key=lambda s: needs[s] if needs[s] is not None else float("inf"))
    return {"seeds": args.seeds, "start": args.start, "step": args.step, "rounds": args.rounds,
            "curves": curves, "final_minus_random": summary["final_minus_random"],
            "labels_to_reach_random_final": needs, "best_strategy": best,
            # Random's own curve is noisy: where it reaches its final accuracy before the end, a strategy that
            # "saves" labels by this measure may only be riding the same noise.
            "random_labels_to_reach_its_final": labels_to_reach(curves["random"], target),
            "labels_saved_at_random_final": 0.0 if needs[best] is None else max(0.0, 1 - needs[best] / random_labels),
            # A saving counts only where random needs all its labels to reach its final accuracy and the best
            # strategy ends no lower than random: otherwise it measures the noise of random's curve.
            "labels_saved_credible": labels_to_reach(curves["random"], target) == random_labels
            and summary["final_minus_random"][best]["delta"] >= 0}


def compare_backbones(train_records: list[Any], test_records: list[Any], pool: dict[str, Any],
                      test: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Each backbone's head on every pool label and on random samples of the issue's label counts, and its paired
    difference from MiniLM's over the same held-out pairs (the text and pair order are the same: same records)."""
    from rlhfkit.core.stats import grouped_bootstrap_ci

    out: dict[str, Any] = {}
    base = correct(test, fit(pool, list(range(len(pool["prompts"])))))
    counts = [args.start + r * args.step for r in range(args.rounds + 1)]
    for backbone in ["minilm-l6", *args.backbones]:
        slug = backbone.replace("/", "_")
        other_pool = pool if backbone == "minilm-l6" else features(train_records, WORK / f"pool-{slug}.pt", backbone)
        other_test = test if backbone == "minilm-l6" else features(test_records, WORK / f"heldout-{slug}.pt",
                                                                   backbone)
        if other_test["prompts"] != test["prompts"] or other_pool["prompts"] != pool["prompts"]:
            raise SystemExit(f"{backbone}: its pairs differ from MiniLM's (truncation or export); not comparable")
        began = time.perf_counter()
        every = correct(other_test, fit(other_pool, list(range(len(other_pool["prompts"])))))
        fit_seconds = time.perf_counter() - began
        low, high = grouped_bootstrap_ci(every.tolist(), test["prompts"], n_bootstrap=N_BOOTSTRAP, seed=0)
        diff = (every - base).tolist()
        d_low, d_high = grouped_bootstrap_ci(diff, test["prompts"], n_bootstrap=N_BOOTSTRAP, seed=0)
        curve = []
        for count in counts:
            accuracies = [float(correct(other_test, fit(other_pool, random.Random(seed).sample(
                range(len(other_pool["prompts"])), count))).mean()) for seed in range(args.seeds)]
            curve.append({"labels": count, "heldout_accuracy": sum(accuracies) / len(accuracies),
                          "per_seed": accuracies})
        out[backbone] = {"parameters": other_pool["parameters"], "heldout_accuracy": float(every.mean()),
                         "ci_low": low, "ci_high": high,
                         "minus_minilm": {"delta": sum(diff) / len(diff), "ci_low": d_low, "ci_high": d_high},
                         "feature_seconds": round(other_pool["seconds"] + other_test["seconds"], 1),
                         "fit_seconds": round(fit_seconds, 2), "random_curve": curve}
    return out


def pandalm_experiment(seeds: int) -> dict[str, Any]:
    """The same strategies on PandaLM's majority labels (three annotators per pair; the pairs the trainer would
    train on: majority decided, ties dropped), prompt-grouped 80/20 split, a smaller budget for its smaller pool."""
    train_records, test_records = split_records(PANDALM)
    pool, test = features(train_records, WORK / "pandalm-pool.pt"), features(test_records, WORK / "pandalm-heldout.pt")
    start, step, rounds = PANDALM_BUDGET
    result = experiment(pool, test, argparse.Namespace(seeds=seeds, start=start, step=step, rounds=rounds))
    full = correct(test, fit(pool, list(range(len(pool["prompts"])))))
    return {"dataset": f"{PANDALM.relative_to(ROOT.parent)}: prompt-grouped 80/20 split, seed 0, majority labels",
            "n_pool": len(pool["prompts"]), "n_heldout": len(test["prompts"]), "full_pool_accuracy": float(full.mean()),
            **result}


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlhfkit.core.atomic import atomic_path

    panels = [("", result), ("small_budget", result["small_budget"])]
    if result.get("pandalm"):
        panels.append(("PandaLM", result["pandalm"]))
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5))
    for axis, (name, part) in zip(axes, panels, strict=True):
        for strategy, curve in part["curves"].items():
            xs = [p["labels"] for p in curve]
            axis.plot(xs, [p["heldout_accuracy"] for p in curve], "o-", label=f"{strategy} (mean of seeds)")
            axis.fill_between(xs, [min(p["per_seed"]) for p in curve], [max(p["per_seed"]) for p in curve],
                              alpha=0.15)
        source = part if name == "PandaLM" else result
        axis.axhline(source["full_pool_accuracy"], color="grey", ls=":", label=f"every label ({source['n_pool']})")
        axis.set(xlabel="labels", ylabel="held-out pairwise accuracy",
                 title=f"{name.replace('_', ' ') or 'main'}: start {part['start']}, +{part['step']} x "
                       f"{part['rounds']}, {part['seeds']} seeds")
        axis.legend(fontsize=8, loc="lower right")
    figure.suptitle(f"HH helpful-base, {result['n_heldout']} held-out pairs"
                    + (f"; PandaLM, {result['pandalm']['n_heldout']}" if result.get("pandalm") else "")
                    + " (band: range over seeds)", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="Random starts per strategy.")
    parser.add_argument("--start", type=int, default=200, help="Random labels before the first round.")
    parser.add_argument("--step", type=int, default=200, help="Labels chosen per round.")
    parser.add_argument("--rounds", type=int, default=5, help="Select -> label -> retrain rounds.")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="Backbones whose frozen features are "
                        "compared with MiniLM's (comma-separated registry names or folders; empty: none).")
    args = parser.parse_args()
    args.backbones = [b for b in args.backbones.split(",") if b.strip()]
    if not HH.exists():
        sys.exit(f"{HH} not found: this benchmark reads the shared HH-RLHF pairs in place")
    from benchmarks.machine import usable_cpus, write_result

    torch.set_num_threads(usable_cpus())
    began = time.perf_counter()
    train_records, test_records = split_records()
    pool, test = features(train_records, WORK / "pool.pt"), features(test_records, WORK / "heldout.pt")
    n_pool = len(pool["prompts"])
    if args.start + args.rounds * args.step > n_pool:
        sys.exit(f"{args.start} + {args.rounds} x {args.step} labels exceed the pool of {n_pool} pairs")
    featured = time.perf_counter()
    main_result = experiment(pool, test, args)
    # Where the head is far from its ceiling, a good choice of labels has the most room to show.
    small = experiment(pool, test, argparse.Namespace(seeds=args.seeds, start=SMALL[0], step=SMALL[1],
                                                      rounds=args.rounds))
    full = correct(test, fit(pool, list(range(n_pool))))
    rounds_done = time.perf_counter()
    backbones = compare_backbones(train_records, test_records, pool, test, args) if args.backbones else None
    panda = pandalm_experiment(args.seeds) if PANDALM.exists() else None
    result = {
        "dataset": f"{HH.relative_to(ROOT.parent)}: prompt-grouped 80/20 split, seed 0",
        "reward_model": "linear head (reward.linear_probe.fit_pairwise_probe) on frozen mean-pooled MiniLM features "
                        "(RewardTrainingConfig() backbone and text, max_length 256); refitted every round",
        "annotator": "simulated: reveals the dataset's own choice for each selected pair",
        "n_pool": n_pool, "n_heldout": len(test["prompts"]), "ensemble_members": ENSEMBLE,
        **main_result,
        "small_budget": small,
        "full_pool_accuracy": float(full.mean()),
        "backbones": backbones,
        "pandalm": panda,
        "goal": ">= 0.25 labels_saved_at_random_final",
        # Features come from the cache when it holds them: each backbone's own extraction time is in `backbones`.
        "timings_s": {"features": round(featured - began, 1), "rounds": round(rounds_done - featured, 1),
                      "backbones": round(time.perf_counter() - rounds_done, 1)},
    }
    plot(result, ROOT / "benchmarks" / "results" / f"{NAME}.png")
    path = write_result(NAME, result)
    for name, part in (("", result), ("small_budget ", small), *((("pandalm ", panda),) if panda else ())):
        for strategy, curve in part["curves"].items():
            print(name + strategy, " ".join(f"{p['labels']}:{p['heldout_accuracy']:.3f}" for p in curve))
        print(name + "final minus random:", part["final_minus_random"])
        print(f"{name}best {part['best_strategy']}: labels saved at random's final accuracy "
              f"{part['labels_saved_at_random_final']:.2f}")
    print(f"every label {result['full_pool_accuracy']:.3f} -> {path}")


if __name__ == "__main__":
    main()
