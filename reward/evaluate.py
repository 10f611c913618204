"""Honest evaluation of a reward model on preference judgments.

`evaluate(scorer, records)` aggregates the judgments per pair (majority), scores both responses of every evaluated
pair in ONE `scorer.score` call, and reports:

- pairwise accuracy on decisive pairs (consensus a or b) only: a pair is correct when r_chosen > r_rejected, an exact
  reward tie counts as half (and is counted). Ties and both_bad pairs are never counted as right or wrong; ties are
  reported apart (does the model keep the two rewards close?);
- a 95% bootstrap interval of that accuracy that resamples whole PROMPT groups, so that many pairs of one prompt
  (which succeed or fail together) do not pass for independent evidence;
- accuracy by subset (source or annotator) and by annotator agreement level, each with n and a Wilson interval;
- calibration of P(a > b) = sigmoid((r_a - r_b) / T): ECE (10 equal-width bins), the bins, Brier score, log loss,
  and optionally a fitted temperature (fitted on the evaluated records themselves, i.e. in-sample);
- length bias: how often the model prefers the longer response against how often the humans did, and accuracy on
  pairs where the humans preferred the shorter response;
- counts of everything that went in and everything left out (ties, both_bad, unresolved, flagged pairs).

Pairs flagged `identical_responses` or `differing_context` are excluded as `preference.export` drops them (a pair whose
two sides answer different contexts says nothing about the reward of a response); `empty_response` pairs are kept.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from preference.aggregate import aggregate
from preference.export import DROP_FLAGS
from preference.schema import Label, PreferenceRecord, prompt_key
from reward.protocols import RewardScorer
from rlhfkit.core.atomic import atomic_path
from rlhfkit.core.errors import InputError
from rlhfkit.core.stats import CI_LEVEL, grouped_bootstrap_ci, sigmoid

SUBSETS = ("source", "annotator")
N_BINS = 10
# Agreement levels of a pair's consensus: (name, lowest agreement included). Checked in this order.
AGREEMENT_LEVELS = (("1.0", 1.0), ("[0.66, 1)", 0.66), ("< 0.66", 0.0))
IN_SAMPLE_NOTE = ("temperature fitted in-sample on these same records: the fitted ECE is optimistic; fit on a "
                  "validation split and evaluate calibration on held-out data")


@dataclasses.dataclass
class GroupAccuracy:
    """Accuracy on one group of decisive pairs, with a Wilson interval (reward ties count half)."""

    name: str
    n: int  # decisive pairs in the group
    correct: float  # correct pairs, reward ties counted as 0.5
    accuracy: float | None  # correct / n; None when n == 0
    ci_low: float | None  # 95% Wilson interval
    ci_high: float | None


@dataclasses.dataclass
class CalibrationBin:
    lower: float  # predicted P(a > b) in [lower, upper) (the last bin includes 1.0)
    upper: float
    count: int  # decisive pairs in the bin
    mean_predicted: float | None  # mean predicted P(a > b); None when the bin is empty
    observed: float | None  # share of the bin's pairs whose consensus label is a


@dataclasses.dataclass
class Calibration:
    """Calibration of P(a > b) = sigmoid((r_a - r_b) / T) against the outcome label == a, on decisive pairs counted in
    both orientations (so it does not depend on which response a dataset stores first)."""

    temperature: float  # the T used (the given one)
    ece: float  # expected calibration error: sum over bins of (count / n) * |mean_predicted - observed|
    brier: float  # mean (p - y)^2
    log_loss: float  # mean -[y log p + (1 - y) log(1 - p)] (natural log)
    bins: list[CalibrationBin]
    fitted_temperature: float | None = None  # the T minimising log loss on these records (fit_temperature=True)
    fitted_ece: float | None = None
    fitted_brier: float | None = None
    fitted_log_loss: float | None = None
    fitted_bins: list[CalibrationBin] | None = None
    fit_in_sample: bool = False  # True whenever a temperature was fitted: it was fitted on the evaluated records
    fit_note: str | None = None


@dataclasses.dataclass
class TieReport:
    """How the model treats pairs the humans called a tie (never counted in accuracy)."""

    n: int
    mean_abs_margin: float | None  # mean |r_a - r_b| over tie pairs
    median_abs_decisive_margin: float  # median |r_chosen - r_rejected| over decisive pairs (the reference scale)
    share_below_median_decisive: float | None  # share of ties with |r_a - r_b| < that median (close = as a tie)


@dataclasses.dataclass
class LengthBias:
    """Length (in characters) against preference, on decisive pairs whose two responses differ in length."""

    n: int  # decisive pairs with responses of different length
    model_prefers_longer: float | None  # share where r_longer > r_shorter (reward ties count half)
    human_prefers_longer: float | None  # share where the consensus chose the longer response
    accuracy_human_prefers_shorter: GroupAccuracy  # accuracy where the consensus chose the shorter response
    accuracy_human_prefers_longer: GroupAccuracy


@dataclasses.dataclass
class Counts:
    judgments: int  # records given
    pairs: int  # pairs after aggregation (every pair, included or not)
    decisive: int  # consensus a or b, not flagged: the pairs accuracy is computed on
    ties: int
    both_bad: int
    unresolved: int  # no majority label: excluded
    flagged: int  # pairs excluded for a flag in DROP_FLAGS (identical_responses, differing_context)
    flagged_by: dict[str, int]  # per flag (a pair with two flags counts under both)
    reward_ties: int  # decisive pairs with r_chosen == r_rejected exactly (counted as half correct)
    scored_pairs: int  # pairs sent to the scorer (decisive + ties); 2 x this many responses scored


@dataclasses.dataclass
class EvalReport:
    counts: Counts
    accuracy: float  # mean over decisive pairs of 1[r_chosen > r_rejected] + 0.5 * 1[r_chosen == r_rejected]
    accuracy_ci: tuple[float, float] | None  # 95% percentile bootstrap over prompt groups; None if n_bootstrap == 0
    n_bootstrap: int
    n_prompt_groups: int  # distinct prompts among decisive pairs: the bootstrap's resampling unit
    subsets_by: str | None  # "source", "annotator" or None
    subsets: list[GroupAccuracy]  # a pair belongs to every subset one of its judgments has (subsets may overlap)
    agreement_levels: list[GroupAccuracy]  # by consensus agreement: 1.0, [0.66, 1), < 0.66
    calibration: Calibration
    length_bias: LengthBias
    ties: TieReport
    notes: list[str]
    # Per-pair reward margins (decisive: r_chosen - r_rejected; ties: |r_a - r_b|), for plots; to_dict omits them.
    margins: list[float] = dataclasses.field(default_factory=list, repr=False)
    tie_abs_margins: list[float] = dataclasses.field(default_factory=list, repr=False)

    def to_dict(self, include_margins: bool = False) -> dict[str, Any]:
        """Plain JSON-ready values: Python floats, NaN/inf as None, tuples as lists."""
        data = dataclasses.asdict(self)
        if not include_margins:
            data.pop("margins")
            data.pop("tie_abs_margins")
        return _jsonable(data)

    def plot(self, path: str | Path) -> Path:
        """One PNG: reliability diagram, histogram of margins, accuracy by subset with intervals. Written atomically."""
        return _plot(self, Path(path))


# --------------------------------------------------------------------------------------------------------- helpers


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def _wilson(name: str, correct: np.ndarray) -> GroupAccuracy:
    n = int(correct.size)
    if n == 0:
        return GroupAccuracy(name, 0, 0.0, None, None, None)
    from statsmodels.stats.proportion import proportion_confint

    hits = float(correct.sum())
    low, high = proportion_confint(hits, n, alpha=1 - CI_LEVEL, method="wilson")
    return GroupAccuracy(name, n, hits, hits / n, float(low), float(high))


def _log_loss(z: np.ndarray, y: np.ndarray) -> float:
    # -log sigmoid(z) = logaddexp(0, -z); -log(1 - sigmoid(z)) = logaddexp(0, z): stable for any z.
    return float(np.mean(np.where(y, np.logaddexp(0.0, -z), np.logaddexp(0.0, z))))


def calibration_bins(p: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> tuple[float, list[CalibrationBin]]:
    """ECE over `n_bins` equal-width bins of [0, 1] (the last bin includes 1.0), and the bins."""
    which = np.minimum(np.floor(p * n_bins).astype(int), n_bins - 1)
    bins, ece = [], 0.0
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        if count:
            mean_p, observed = float(p[mask].mean()), float(y[mask].mean())
            ece += count / p.size * abs(mean_p - observed)
        else:
            mean_p = observed = None
        bins.append(CalibrationBin(b / n_bins, (b + 1) / n_bins, count, mean_p, observed))
    return float(ece), bins


def _calibration_at(diffs: np.ndarray, y: np.ndarray, temperature: float) -> tuple[float, float, float, list]:
    z = diffs / temperature
    p = sigmoid(z)
    ece, bins = calibration_bins(p, y)
    return ece, float(np.mean((p - y) ** 2)), _log_loss(z, y), bins


def best_temperature(diffs: Sequence[float], outcomes: Sequence[bool]) -> tuple[float | None, str | None]:
    """The T > 0 minimising the log loss of sigmoid(diffs / T) against outcomes; (T, note about the fit or None).

    Searched on log T (scipy's bounded Brent) over 8 decades around the median nonzero |diff|. Returns (None, why)
    when every diff is 0 (no temperature changes anything); the note says when the optimum is not a real one
    (perfectly ordered pairs, or a fit at the search bound).
    """
    from scipy.optimize import minimize_scalar

    diffs = np.asarray(diffs, dtype=float)
    y = np.asarray(outcomes, dtype=bool)
    nonzero = np.abs(diffs[diffs != 0])
    if nonzero.size == 0:
        return None, "no temperature fitted: every decisive pair has r_a == r_b"
    centre = math.log(float(np.median(nonzero)))
    low, high = centre - math.log(1e4), centre + math.log(1e4)
    result = minimize_scalar(lambda log_t: _log_loss(diffs / math.exp(log_t), y), bounds=(low, high),
                             method="bounded", options={"xatol": 1e-6})
    log_t = float(result.x)
    note = None
    if np.all((diffs > 0) == y) and np.all(diffs != 0):
        note = ("the rewards order every decisive pair correctly, so the log loss falls toward 0 as T shrinks: the "
                "fitted T is wherever the search stopped and means little")
    elif log_t - low < 1e-3:
        note = ("the log loss keeps falling as T shrinks (the rewards order these pairs almost perfectly): the "
                "fitted T sits at the search bound and means little")
    elif high - log_t < 1e-3:
        note = ("the log loss keeps falling as T grows (the rewards carry no usable signal on these pairs, or a "
                "reversed one): the fitted T sits at the search bound and means little")
    return math.exp(log_t), note


def _scores(scorer: RewardScorer, prompts: list, responses: list[str], n_pairs: int, progress: bool = False
            ) -> np.ndarray:
    # rlhfkit's models draw a bar; any other scorer with score(prompts, responses) is called as the protocol says
    takes_progress = progress and "progress" in inspect.signature(scorer.score).parameters
    raw = scorer.score(prompts, responses, progress=True) if takes_progress else scorer.score(prompts, responses)
    try:
        scores = np.array([float(s) for s in raw], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the scorer must return one number per response; got {type(raw).__name__} ({exc})") from exc
    if scores.size != len(responses):
        raise ValueError(f"the scorer returned {scores.size} scores for {len(responses)} responses "
                         f"({n_pairs} pairs x 2); it must return exactly one score per response")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        first = int(bad[0])
        side = "response_a" if first < n_pairs else "response_b"
        raise ValueError(f"the scorer returned {bad.size} non-finite score(s) (NaN or inf) out of {scores.size}; "
                         f"the first is {scores[first]} for {side} of pair {first % n_pairs}")
    return scores


# ------------------------------------------------------------------------------------------------------- evaluate


def evaluate(scorer: RewardScorer, records: Iterable[PreferenceRecord], *, temperature: float = 1.0,
             n_bootstrap: int = 1000, seed: int = 0, fit_temperature: bool = False,
             subsets: str | None = "source", progress: bool = False) -> EvalReport:
    """Evaluate `scorer` on `records` (see the module docstring for every metric).

    temperature: the T of P(a > b) = sigmoid((r_a - r_b) / T) for calibration (e.g. `RewardMeta.temperature`).
    n_bootstrap: bootstrap replicates of the accuracy interval (0: no interval). seed: the bootstrap's seed.
    fit_temperature: also fit T on these records (in-sample; the report says so).
    subsets: break accuracy down by "source", "annotator", or None.
    progress: a progress bar while scoring (on a terminal).
    """
    if subsets not in (None, *SUBSETS):
        raise InputError(f"subsets must be one of {', '.join(SUBSETS)} or None, not {subsets!r}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature must be a positive finite number, not {temperature!r}")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be a non-negative integer, not {n_bootstrap!r}")
    records = list(records)
    if not records:
        raise InputError("no records to evaluate")
    consensus = aggregate(records, method="majority", by="pair")

    members: dict[str, dict[str, None]] = {}
    if subsets is not None:
        for record in records:
            members.setdefault(record.pair_id, {})[getattr(record, subsets)] = None

    flagged_by: dict[str, int] = {}
    decisive, ties = [], []
    unresolved = both_bad = flagged = 0
    for item in consensus:
        flags = sorted(set(item.record.metadata.get("flags") or []) & set(DROP_FLAGS))
        if flags:
            flagged += 1
            for flag in flags:
                flagged_by[flag] = flagged_by.get(flag, 0) + 1
        elif item.label is None:
            unresolved += 1
        elif item.label == Label.BOTH_BAD:
            both_bad += 1
        elif item.label == Label.TIE:
            ties.append(item)
        else:
            decisive.append(item)
    if not decisive:
        raise InputError(f"cannot compute accuracy: every pair is a tie, both_bad or unresolved ({len(consensus)} "
                         f"pairs: {len(ties)} tie, {both_bad} both_bad, {unresolved} unresolved, {flagged} flagged)")

    # One call: every prompt twice, first with response_a, then with response_b.
    scored = decisive + ties
    prompts = [item.record.prompt for item in scored]
    scores = _scores(scorer, prompts + prompts, [item.record.response_a for item in scored]
                     + [item.record.response_b for item in scored], len(scored), progress)
    r_a, r_b = scores[: len(scored)], scores[len(scored):]
    nd = len(decisive)
    da, db = r_a[:nd], r_b[:nd]
    label_a = np.array([item.label == Label.A for item in decisive])
    margins = np.where(label_a, da - db, db - da)  # r_chosen - r_rejected
    correct = (margins > 0) + 0.5 * (margins == 0)
    accuracy = float(correct.mean())
    notes: list[str] = []

    groups = [prompt_key(item.record.prompt) for item in decisive]
    n_groups = len(set(groups))
    accuracy_ci = grouped_bootstrap_ci(correct, groups, n_bootstrap=n_bootstrap, seed=seed) if n_bootstrap else None
    if n_bootstrap and n_groups < 10:
        notes.append(f"only {n_groups} distinct prompt(s) among decisive pairs: the bootstrap interval is crude")

    # Subsets (a pair belongs to every source/annotator among its judgments) and agreement levels.
    subset_rows: list[GroupAccuracy] = []
    if subsets is not None:
        names: dict[str, list[int]] = {}
        for i, item in enumerate(decisive):
            for name in members[item.key]:
                names.setdefault(name, []).append(i)
        subset_rows = [_wilson(name, correct[idx]) for name, idx in sorted(names.items())]
        if sum(row.n for row in subset_rows) > nd:
            notes.append(f"some pairs have judgments from several {subsets}s and count in each of their subsets")
    level_of = []
    for item in decisive:
        level_of.append(next(name for name, low in AGREEMENT_LEVELS if item.agreement >= low))
    level_of = np.array(level_of)
    agreement_rows = [_wilson(name, correct[level_of == name]) for name, _ in AGREEMENT_LEVELS]
    singles = sum(1 for item in decisive if item.n_judgments == 1)
    if singles:
        notes.append(f"{singles} decisive pair(s) have a single judgment and sit in agreement level 1.0")

    # Calibration of P(a > b) against label == a, with every decisive pair counted in BOTH orientations
    # ((r_a - r_b, a won) and (r_b - r_a, b won)). Calibration must not depend on storage order: HH-RLHF stores the
    # chosen answer as `a` in every pair, and one orientation alone would score a single class.
    diffs = np.concatenate([da - db, db - da])
    a_won = np.concatenate([label_a, ~label_a])
    ece, brier, log_loss, bins = _calibration_at(diffs, a_won, float(temperature))
    calibration = Calibration(float(temperature), ece, brier, log_loss, bins)
    if fit_temperature:
        fitted, fit_note = best_temperature(diffs, a_won)
        calibration.fit_in_sample = True
        calibration.fit_note = IN_SAMPLE_NOTE if fit_note is None else f"{IN_SAMPLE_NOTE}; {fit_note}"
        if fitted is not None:
            calibration.fitted_temperature = fitted
            (calibration.fitted_ece, calibration.fitted_brier, calibration.fitted_log_loss,
             calibration.fitted_bins) = _calibration_at(diffs, a_won, fitted)
        notes.append(calibration.fit_note)

    # Length bias, by characters, on decisive pairs whose responses differ in length.
    len_a = np.array([len(item.record.response_a) for item in decisive])
    len_b = np.array([len(item.record.response_b) for item in decisive])
    differs = len_a != len_b
    a_longer = len_a > len_b
    r_longer, r_shorter = np.where(a_longer, da, db), np.where(a_longer, db, da)
    model_longer = (r_longer > r_shorter) + 0.5 * (r_longer == r_shorter)
    human_longer = label_a == a_longer
    n_len = int(differs.sum())
    length_bias = LengthBias(
        n=n_len,
        model_prefers_longer=float(model_longer[differs].mean()) if n_len else None,
        human_prefers_longer=float(human_longer[differs].mean()) if n_len else None,
        accuracy_human_prefers_shorter=_wilson("human prefers shorter", correct[differs & ~human_longer]),
        accuracy_human_prefers_longer=_wilson("human prefers longer", correct[differs & human_longer]),
    )

    # Ties: does the model keep the two rewards close?
    tie_abs = np.abs(r_a[nd:] - r_b[nd:])
    median_decisive = float(np.median(np.abs(margins)))
    tie_report = TieReport(
        n=len(ties),
        mean_abs_margin=float(tie_abs.mean()) if ties else None,
        median_abs_decisive_margin=median_decisive,
        share_below_median_decisive=float((tie_abs < median_decisive).mean()) if ties else None,
    )

    counts = Counts(judgments=len(records), pairs=len(consensus), decisive=nd, ties=len(ties), both_bad=both_bad,
                    unresolved=unresolved, flagged=flagged, flagged_by=flagged_by,
                    reward_ties=int((margins == 0).sum()), scored_pairs=len(scored))
    if unresolved:
        notes.append(f"{unresolved} pair(s) without a majority label excluded")
    if flagged:
        notes.append(f"{flagged} flagged pair(s) excluded ({', '.join(f'{k}: {v}' for k, v in flagged_by.items())})")
    if counts.reward_ties:
        notes.append(f"{counts.reward_ties} decisive pair(s) with equal rewards counted as half correct")
    return EvalReport(counts=counts, accuracy=accuracy, accuracy_ci=accuracy_ci, n_bootstrap=n_bootstrap,
                      n_prompt_groups=n_groups, subsets_by=subsets, subsets=subset_rows,
                      agreement_levels=agreement_rows, calibration=calibration, length_bias=length_bias,
                      ties=tie_report, notes=notes, margins=margins.tolist(), tie_abs_margins=tie_abs.tolist())


# ----------------------------------------------------------------------------------------------------------- plot


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _plot(report: EvalReport, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17, 5.2), layout="constrained")
    FigureCanvasAgg(fig)
    reliability, histogram, by_subset = fig.subplots(1, 3)
    cal = report.calibration

    # Reliability diagram: observed share of "a" per bin against the mean predicted P(a > b).
    reliability.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    series = [(cal.bins, f"T = {cal.temperature:.3g}", "tab:blue")]
    if cal.fitted_bins is not None:
        series.append((cal.fitted_bins, f"fitted T = {cal.fitted_temperature:.3g} (in-sample)", "tab:orange"))
    for bins, name, colour in series:
        filled = [b for b in bins if b.count]
        xs, ys = [b.mean_predicted for b in filled], [b.observed for b in filled]
        reliability.plot(xs, ys, marker="o", color=colour, label=name)
        if colour == "tab:blue":
            for b in filled:
                reliability.annotate(f"n={b.count}", (b.mean_predicted, b.observed), textcoords="offset points",
                                     xytext=(4, -11), fontsize=7, color=colour)
    title = f"Reliability (decisive pairs)\nECE = {cal.ece:.3f}"
    if cal.fitted_ece is not None:
        title += f", fitted in-sample: {cal.fitted_ece:.3f}"
    reliability.set_title(title)
    reliability.set_xlabel("predicted P(a preferred) = sigmoid((r_a - r_b) / T)")
    reliability.set_ylabel("observed share labelled a")
    reliability.set_xlim(0, 1)
    reliability.set_ylim(-0.03, 1.03)
    reliability.legend(loc="upper left", fontsize=8)

    # Margins: r_chosen - r_rejected for decisive pairs, |r_a - r_b| for ties.
    margins = np.asarray(report.margins, dtype=float)
    tie_abs = np.asarray(report.tie_abs_margins, dtype=float)
    values = np.concatenate([margins, tie_abs])
    low, high = float(values.min()), float(values.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, 31)
    histogram.hist(margins, bins=edges, alpha=0.7, color="tab:blue",
                   label=f"decisive: r_chosen - r_rejected (n={margins.size})")
    if tie_abs.size:
        histogram.hist(tie_abs, bins=edges, alpha=0.6, color="tab:orange",
                       label=f"ties: |r_a - r_b| (n={tie_abs.size})")
    histogram.axvline(0, color="black", linewidth=1)
    histogram.set_title(f"Reward margins\naccuracy = {report.accuracy:.3f} "
                        f"({report.counts.decisive} decisive pairs; left of 0 = wrong)")
    histogram.set_xlabel("reward margin")
    histogram.set_ylabel("pairs")
    histogram.legend(fontsize=8)

    # Accuracy with intervals: overall (bootstrap over prompts), then subsets (or agreement levels) with Wilson.
    rows: list[tuple[str, float, float | None, float | None]] = []
    ci = report.accuracy_ci
    rows.append((f"all (n={report.counts.decisive}, bootstrap)", report.accuracy, *(ci if ci else (None, None))))
    breakdown = report.subsets if report.subsets_by else report.agreement_levels
    kind = f"by {report.subsets_by}" if report.subsets_by else "by annotator agreement"
    for row in breakdown:
        if row.n:
            rows.append((f"{_short(row.name)} (n={row.n})", row.accuracy, row.ci_low, row.ci_high))
    positions = np.arange(len(rows))[::-1]
    for pos, (_, acc, lo, hi) in zip(positions, rows, strict=True):
        err = None if lo is None else [[acc - lo], [hi - acc]]
        by_subset.errorbar(acc, pos, xerr=err, fmt="o", capsize=4,
                           color="tab:blue" if pos != positions[0] else "black")
    by_subset.axvline(0.5, color="grey", linestyle="--", linewidth=1, label="chance (0.5)")
    by_subset.set_yticks(positions, [name for name, *_ in rows], fontsize=8)
    by_subset.set_xlim(0, 1)
    by_subset.set_xlabel("pairwise accuracy (95% interval)")
    by_subset.set_title(f"Accuracy {kind}\n(ties and both_bad excluded)")
    by_subset.legend(loc="lower left", fontsize=8)

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path
