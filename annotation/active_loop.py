"""The active-learning loop: label -> retrain -> select, round after round, resumable.

Round 0 labels a seeded random sample of the pool (`start` pairs) and trains the first reward model (an ensemble of
`ensemble` members). Each later round chooses `budget` more pairs with `strategy` (`annotation.select`) using the
previous round's model, has the annotator label them, and retrains on everything in the store.

Each round lives in OUT/round-N/: `selected.jsonl` (written before any labeling, so a resumed round labels the same
pairs), `rm/` (the reward model) and `done.json` (written last). A rerun skips finished rounds and, inside an
unfinished one, labels only the selected pairs the store does not hold yet: no pair is labeled twice, and a pair
already in the store (from an earlier run or another annotator), or chosen in an earlier round, is never chosen
again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from annotation.base import Annotator
from annotation.config import ActiveLoopConfig
from annotation.select import select_pairs
from preference.pairs import Pair, read_pairs, write_pairs
from preference.store import PreferenceStore
from reward.config import RewardTrainingConfig
from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import InputError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RoundResult:
    round: int
    selected: int  # pairs chosen this round
    labeled: int  # chosen pairs the store holds a judgment of (a pair the annotator skipped is not labeled)
    store_pairs: int  # distinct pairs in the store after labeling
    model: str  # the round's reward model folder

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _labeled_ids(store: PreferenceStore) -> set[str]:
    return {record.pair_id for record in store.records()} if PreferenceStore.is_store(store.path) else set()


def _select(pool: Sequence[Pair], labeled: set[str], config: ActiveLoopConfig, round_index: int,
            previous: str | None) -> list[Pair]:
    rest = [pair for pair in pool if pair.pair_id not in labeled]
    want = config.start if round_index == 0 else config.budget
    if len(rest) < want:
        raise InputError(f"round {round_index} needs {want} unlabeled pairs but the pool has {len(rest)} left "
                         f"(of {len(pool)}); lower start/budget/rounds or add pairs")
    seed = config.seed * 1000 + round_index
    if round_index == 0:
        return [s.pair for s in select_pairs(rest, "random", want, seed=seed, diverse=config.diverse)]
    from reward.model import member_scorers

    scorers = member_scorers(previous) if config.strategy != "random" and previous else None
    return [s.pair for s in select_pairs(rest, config.strategy, want, seed=seed, scorers=scorers,
                                         diverse=config.diverse)]


def run_active_loop(pool: Sequence[Pair], annotator: Annotator, store: str | Path, out: str | Path,
                    config: ActiveLoopConfig | None = None, reward: RewardTrainingConfig | None = None,
                    on_round: Callable[[RoundResult], None] | None = None) -> list[RoundResult]:
    """Run (or resume) the loop; returns every round's result, finished ones included. `reward`: the training
    settings of each round's model (its output_dir, ensemble and seed are set per round)."""
    config = config or ActiveLoopConfig()
    config.validate()
    reward = reward or RewardTrainingConfig()
    pool = list(pool)
    if not pool:
        raise InputError("the pool has no pairs to choose from")
    ids = [pair.pair_id for pair in pool]
    if len(set(ids)) != len(ids):
        raise InputError(f"the pool repeats {len(ids) - len(set(ids))} pair(s): each pair may appear once")
    out, store = Path(out), PreferenceStore(store)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "loop.json"
    current = {"loop": dataclasses.asdict(config), "reward": dataclasses.asdict(reward), "pool": len(pool)}
    if settings.exists() and json.loads(settings.read_text()) != current:
        raise InputError(f"{settings} holds a loop with other settings or another pool; use another output folder")
    atomic_write_text(settings, json.dumps(current, indent=1))
    results: list[RoundResult] = []
    previous: str | None = None
    for round_index in range(config.rounds + 1):
        folder = out / f"round-{round_index}"
        done = folder / "done.json"
        if done.exists():
            result = RoundResult(**json.loads(done.read_text()))
        else:
            result = _run_round(pool, annotator, store, folder, config, reward, round_index, previous)
            atomic_write_text(done, json.dumps(result.as_dict(), indent=1))
        results.append(result)
        previous = result.model
        if on_round is not None:
            on_round(result)
    return results


def _run_round(pool: list[Pair], annotator: Annotator, store: PreferenceStore, folder: Path,
               config: ActiveLoopConfig, reward: RewardTrainingConfig, round_index: int, previous: str | None
               ) -> RoundResult:
    from reward.train import train_reward_model  # torch and TRL: only when a round runs

    folder.mkdir(parents=True, exist_ok=True)
    chosen_file = folder / "selected.jsonl"
    labeled = _labeled_ids(store)
    if chosen_file.exists():
        chosen = read_pairs(chosen_file)
    else:
        # A pair an annotator skipped stays unlabeled; it is not offered again either.
        earlier = {pair.pair_id for n in range(round_index)
                   for pair in read_pairs(folder.parent / f"round-{n}" / "selected.jsonl")}
        chosen = _select(pool, labeled | earlier, config, round_index, previous)
        write_pairs(chosen, chosen_file)  # atomic; from here on a resumed round labels these same pairs
    todo = [pair for pair in chosen if pair.pair_id not in labeled]
    records = [r for r in annotator.annotate(todo) if r is not None] if todo else []
    if records:
        store.append(records, note=f"active loop round {round_index} ({config.strategy}) by {annotator.name}")
    judgments = list(store.records())  # one read: what to train on and which pairs are labeled
    after = {record.pair_id for record in judgments}
    given = sum(pair.pair_id in after for pair in chosen)
    log.info("round %d: %d pairs chosen, %d labeled", round_index, len(chosen), given)
    model_dir = folder / "rm"
    round_reward = dataclasses.replace(reward, output_dir=str(model_dir), ensemble=config.ensemble,
                                       seed=config.seed + round_index, resume=True)
    train_reward_model(judgments, round_reward)
    return RoundResult(round_index, len(chosen), given, len(after), str(model_dir / "model"))
