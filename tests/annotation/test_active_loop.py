"""The active-learning loop on real parts: the IFEval verifier labels, TRL's RewardTrainer retrains a tiny encoder
(real MiniLM tokenizer) every round, `annotation.select` chooses with the previous round's models."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from annotation.active_loop import run_active_loop
from annotation.config import ActiveLoopConfig
from annotation.select import select_pairs
from annotation.verifier import VerifierAnnotator
from preference.pairs import Pair, read_pairs, write_pairs
from preference.store import PreferenceStore
from reward.config import RewardTrainingConfig
from reward.model import RewardModel, member_folders
from rlhfkit.cli.main import app
from rlhfkit.core.errors import InputError
from tests.tiny_models import save_tiny, tiny_encoder

WORDS = ["river", "stone", "cloud", "apple", "night", "green", "music", "table", "light", "paper"]
NO_COMMA = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}


def pool(n: int, seed: int = 0) -> list[Pair]:
    """Each pair: one answer without commas (follows the prompt's instruction), one with (breaks it)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(5)]
        good, bad = " ".join(words), ", ".join(words)
        a, b = (good, bad) if rng.random() < 0.5 else (bad, good)
        pairs.append(Pair(f"List five words without commas, item {i}.", a, b, dict(NO_COMMA)))
    return pairs


@pytest.fixture(scope="module")
def reward(tmp_path_factory) -> RewardTrainingConfig:
    model, tokenizer = tiny_encoder(hidden_size=32, num_layers=1)
    backbone = save_tiny(model, tokenizer, tmp_path_factory.mktemp("tiny") / "backbone")
    return RewardTrainingConfig(model=str(backbone), max_length=64, learning_rate=1e-3, num_train_epochs=2,
                                per_device_train_batch_size=16, save_steps=50, logging_steps=5,
                                center_rewards_coefficient=None)


def ids(pairs) -> set[str]:
    return {pair.pair_id for pair in pairs}


@pytest.mark.parametrize("strategy", ["random", "uncertainty", "disagreement"])
def test_each_strategy_labels_new_pairs_and_retrains_every_round(strategy, reward, tmp_path):
    candidates = pool(40)
    config = ActiveLoopConfig(strategy=strategy, rounds=1, start=12, budget=6, ensemble=2)
    results = run_active_loop(candidates, VerifierAnnotator(), tmp_path / "store", tmp_path / "loop", config, reward)

    assert [r.round for r in results] == [0, 1] and [r.selected for r in results] == [12, 6]
    assert [r.labeled for r in results] == [12, 6] and results[-1].store_pairs == 18
    first = read_pairs(tmp_path / "loop" / "round-0" / "selected.jsonl")
    second = read_pairs(tmp_path / "loop" / "round-1" / "selected.jsonl")
    assert not ids(first) & ids(second) and (ids(first) | ids(second)) <= ids(candidates)
    records = list(PreferenceStore(tmp_path / "store").records())
    assert len(records) == 18 and len({r.pair_id for r in records}) == 18  # nobody labeled twice
    for result in results:  # every round trained its own ensemble
        assert len(member_folders(result.model)) == 2

    if strategy == "uncertainty":  # chosen by round 0's models: the 6 unlabeled pairs they are least sure of
        rest = [p for p in candidates if p.pair_id not in ids(first)]
        members = [RewardModel.load(folder) for folder in member_folders(results[0].model)]
        expected = select_pairs(rest, "uncertainty", 6, seed=1, scorers=members)
        assert [s.pair.pair_id for s in expected] == [p.pair_id for p in second]


class StopsOnSecondCall(VerifierAnnotator):
    """The real verifier, interrupted the second time it is asked (as a person closing the job would)."""

    calls = 0

    def annotate(self, pairs, **kwargs):
        type(self).calls += 1
        if type(self).calls == 2:
            raise KeyboardInterrupt
        return super().annotate(pairs, **kwargs)


def test_an_interrupted_loop_resumes_with_the_same_pairs_and_labels_none_twice(reward, tmp_path):
    candidates = pool(30)
    config = ActiveLoopConfig(strategy="disagreement", rounds=1, start=10, budget=5, ensemble=2)
    with pytest.raises(KeyboardInterrupt):
        run_active_loop(candidates, StopsOnSecondCall(), tmp_path / "store", tmp_path / "loop", config, reward)
    chosen = read_pairs(tmp_path / "loop" / "round-1" / "selected.jsonl")  # written before labeling began
    assert len(PreferenceStore(tmp_path / "store")) == 10

    results = run_active_loop(candidates, VerifierAnnotator(), tmp_path / "store", tmp_path / "loop", config, reward)
    assert [p.pair_id for p in read_pairs(tmp_path / "loop" / "round-1" / "selected.jsonl")] == \
        [p.pair_id for p in chosen]
    records = list(PreferenceStore(tmp_path / "store").records())
    assert len(records) == 15 and len({r.pair_id for r in records}) == 15
    assert results[0].model.endswith("round-0/rm/model") and results[-1].store_pairs == 15


def test_bad_loops_are_refused_clearly(reward, tmp_path):
    with pytest.raises(InputError, match="ensemble of one member cannot disagree"):
        run_active_loop(pool(10), VerifierAnnotator(), tmp_path / "s", tmp_path / "a",
                        ActiveLoopConfig(strategy="disagreement", ensemble=1), reward)
    with pytest.raises(InputError, match="round 0 needs 50 unlabeled pairs but the pool has 10 left"):
        run_active_loop(pool(10), VerifierAnnotator(), tmp_path / "s", tmp_path / "b", ActiveLoopConfig(), reward)
    with pytest.raises(InputError, match="repeats 1 pair"):
        run_active_loop(pool(3) + pool(1), VerifierAnnotator(), tmp_path / "s", tmp_path / "c",
                        ActiveLoopConfig(start=2), reward)
    small = ActiveLoopConfig(strategy="random", rounds=0, start=4, ensemble=1)
    run_active_loop(pool(8), VerifierAnnotator(), tmp_path / "s", tmp_path / "d", small, reward)
    with pytest.raises(InputError, match="other settings"):
        run_active_loop(pool(8), VerifierAnnotator(), tmp_path / "s", tmp_path / "d",
                        ActiveLoopConfig(strategy="random", rounds=0, start=5, ensemble=1), reward)


def test_the_loop_from_the_command_line(reward, tmp_path):
    write_pairs(pool(20), tmp_path / "pool.jsonl")
    (tmp_path / "reward.yaml").write_text(json.dumps({k: getattr(reward, k) for k in (
        "model", "max_length", "learning_rate", "num_train_epochs", "per_device_train_batch_size")}))
    args = ["annotate", "loop", "--pool", str(tmp_path / "pool.jsonl"), "--store", str(tmp_path / "store"),
            "--out", str(tmp_path / "loop"), "--strategy", "uncertainty", "--rounds", "1", "--start", "8",
            "--budget", "4", "--ensemble", "1", "--reward-config", str(tmp_path / "reward.yaml")]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "round 1" in result.output and len(PreferenceStore(tmp_path / "store")) == 12
    again = CliRunner().invoke(app, args, terminal_width=200)  # finished: nothing more is labeled
    assert again.exit_code == 0, again.output
    assert len(PreferenceStore(tmp_path / "store")) == 12

    bad = CliRunner().invoke(app, [*args[:-2], "--ensemble", "1", "--strategy", "disagreement"],
                             terminal_width=200)
    assert bad.exit_code != 0 and "cannot disagree" in bad.output
