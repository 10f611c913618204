"""Reward training with TRL's real RewardTrainer on a tiny encoder (real MiniLM tokenizer), then the trained model
used for scoring, as an annotator and for uncertainty selection."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from annotation.reward_annotator import RewardAnnotator, strength_of
from annotation.select import select_pairs
from preference.pairs import Pair, write_pairs
from preference.schema import Label, PreferenceRecord, Strength
from preference.store import PreferenceStore, save_preferences
from reward.config import RewardTrainingConfig
from reward.model import RewardEnsemble, RewardModel, load_reward_model
from reward.train import train_reward_model
from rlhfkit.cli.main import app
from tests.tiny_models import save_tiny, tiny_encoder

WORDS = ["river", "stone", "cloud", "apple", "night", "green", "music", "table", "light", "paper"]
GOOD = ["thanks", "clear", "kind", "helpful"]
BAD = ["broken", "wrong", "rude", "useless"]  # (MiniLM's tokenizer is uncased: case cannot be the signal)


def easy_preferences(n: int, seed: int) -> list[PreferenceRecord]:
    """The answer ending in a friendly word is always preferred: learnable from tokens alone."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(5))
        good, bad = f"{text} {rng.choice(GOOD)}", f"{text} {rng.choice(BAD)}"
        a_good = rng.random() < 0.5
        records.append(PreferenceRecord(
            prompt=f"Write six words, item {i}.", response_a=good if a_good else bad,
            response_b=bad if a_good else good, label=Label.A if a_good else Label.B, annotator="rule", source="t"))
    return records


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    model, tokenizer = tiny_encoder(hidden_size=64, num_layers=2)
    return str(save_tiny(model, tokenizer, tmp_path_factory.mktemp("tiny") / "backbone"))


@pytest.fixture(scope="module")
def trained(backbone, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "run"
    config = RewardTrainingConfig(model=backbone, output_dir=str(out), max_length=64, learning_rate=1e-3,
                                  num_train_epochs=4, per_device_train_batch_size=16, save_steps=20,
                                  logging_steps=5, center_rewards_coefficient=None)
    return train_reward_model(easy_preferences(128, 0), config), out


def accuracy(model, records) -> float:
    good = [r.response_a if r.label == Label.A else r.response_b for r in records]
    bad = [r.response_b if r.label == Label.A else r.response_a for r in records]
    prompts = [r.prompt for r in records]
    scores_good, scores_bad = model.score(prompts, good), model.score(prompts, bad)
    return sum(g > b for g, b in zip(scores_good, scores_bad)) / len(records)


def test_trl_training_learns_an_easy_preference_and_saves_everything(trained):
    result, out = trained
    model = load_reward_model(result.model_dir)
    assert isinstance(model, RewardModel)
    assert accuracy(model, easy_preferences(60, 1)) >= 0.9  # held-out: other word draws
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    log = json.loads((out / "train_log.json").read_text())
    assert any("loss" in entry for entry in log)
    assert model.meta.max_length == 64 and model.meta.extra["data"]["pairs"] == 128
    assert "probe_train_accuracy" not in model.meta.extra  # the default head starts random, as plain TRL's


def test_saved_model_reloads_and_scores_identically(trained, tmp_path):
    result, _ = trained
    first = load_reward_model(result.model_dir)
    prompts, responses = ["Write six words."] * 3, ["river stone kind", "river stone rude", "night light music"]
    again = RewardModel.load(first.save(tmp_path / "copy"))
    assert first.score(prompts, responses) == again.score(prompts, responses)


def test_lora_training_round_trips_with_its_head(backbone, tmp_path):
    config = RewardTrainingConfig(model=backbone, output_dir=str(tmp_path / "lora"), max_length=64,
                                  learning_rate=5e-3, num_train_epochs=3, lora=True, lora_r=8,
                                  lora_target_modules=["query", "value"], center_rewards_coefficient=None)
    result = train_reward_model(easy_preferences(64, 2), config)
    assert (result.model_dir / "adapter_config.json").exists()
    model = load_reward_model(result.model_dir)
    assert model.meta.lora and accuracy(model, easy_preferences(40, 3)) >= 0.8  # the trained head came back


def test_bad_training_inputs_are_refused_clearly(backbone, tmp_path):
    config = RewardTrainingConfig(model=backbone, output_dir=str(tmp_path / "x"), max_length=64)
    with pytest.raises(ValueError, match="empty"):
        train_reward_model([], config)
    ties = [PreferenceRecord("Q", f"a{i}", f"b{i}", Label.TIE, "u", "s") for i in range(4)]
    with pytest.raises(ValueError, match="no trainable pair"):
        train_reward_model(ties, config)
    with pytest.raises(ValueError, match="learning_rate"):
        train_reward_model(easy_preferences(8, 0), RewardTrainingConfig(model=backbone, learning_rate=0))


def test_resume_continues_from_the_last_checkpoint(backbone, tmp_path):
    out = tmp_path / "resume"
    config = RewardTrainingConfig(model=backbone, output_dir=str(out), max_length=64, num_train_epochs=1,
                                  per_device_train_batch_size=8, save_steps=2, center_rewards_coefficient=None)
    train_reward_model(easy_preferences(32, 0), config)
    with pytest.raises(ValueError, match="already holds a training run"):
        train_reward_model(easy_preferences(32, 0), config)
    (out / "model" / "rlhfkit_reward.json").unlink()  # as if killed before the final save
    config.resume = True
    train_reward_model(easy_preferences(32, 0), config)
    assert (out / "model" / "rlhfkit_reward.json").exists()


def test_ensembles_train_one_member_per_seed(backbone, tmp_path):
    config = RewardTrainingConfig(model=backbone, output_dir=str(tmp_path / "ens"), max_length=64,
                                  num_train_epochs=2, per_device_train_batch_size=4, learning_rate=1e-3, ensemble=2,
                                  center_rewards_coefficient=None)
    result = train_reward_model(easy_preferences(16, 0), config)
    ensemble = load_reward_model(result.model_dir)
    assert isinstance(ensemble, RewardEnsemble) and len(ensemble.members) == 2
    members = ensemble.score_members(["Q"], ["river"])
    assert members[0] != members[1]  # different seeds, different models


def test_the_trained_model_annotates_and_selects(trained, tmp_path):
    result, _ = trained
    pairs = [Pair(r.prompt, r.response_a, r.response_b) for r in easy_preferences(20, 4)]
    records = RewardAnnotator(result.model_dir).annotate(pairs)
    truth = easy_preferences(20, 4)
    agree = sum(rec.label == t.label for rec, t in zip(records, truth))
    assert agree >= 18 and all("p_a" in rec.metadata["reward"] for rec in records)
    assert strength_of(0.95) == Strength.STRONG and strength_of(0.25) == Strength.CLEAR
    chosen = select_pairs(pairs, "uncertainty", 3, scorers=[load_reward_model(result.model_dir)])
    assert len(chosen) == 3

    runner = CliRunner()
    write_pairs(pairs, tmp_path / "pairs.jsonl")
    labelled = runner.invoke(app, ["annotate", "label", str(tmp_path / "pairs.jsonl"), "--store", str(tmp_path / "s"),
                                   "--annotator", "reward", "--reward-model", str(result.model_dir)])
    assert labelled.exit_code == 0, labelled.output
    assert len(PreferenceStore(tmp_path / "s")) == 20
    picked = runner.invoke(app, ["annotate", "select", str(tmp_path / "pairs.jsonl"), "--strategy", "uncertainty",
                                 "--budget", "5", "--out", str(tmp_path / "next.jsonl"), "--reward-model",
                                 str(result.model_dir)])
    assert picked.exit_code == 0, picked.output
    assert len((tmp_path / "next.jsonl").read_text().splitlines()) == 5


def test_reward_cli_trains_evaluates_and_scores(backbone, tmp_path):
    from preference.store import save_preferences

    save_preferences(easy_preferences(64, 5), tmp_path / "train")
    save_preferences(easy_preferences(40, 6), tmp_path / "test")
    runner = CliRunner()
    trained = runner.invoke(app, ["reward", "train", str(tmp_path / "train"), "-o", str(tmp_path / "run"), "--model",
                                  backbone, "--max-length", "64", "--epochs", "3", "--learning-rate", "1e-3",
                                  "--batch-size", "8"])
    assert trained.exit_code == 0, trained.output
    assert "training pairs" in trained.output
    model = tmp_path / "run" / "model"
    evaluated = runner.invoke(app, ["reward", "eval", str(model), str(tmp_path / "test"), "-o", str(tmp_path / "ev")])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["counts"]["decisive"] == 40 and report["accuracy"] >= 0.8
    assert (tmp_path / "ev" / "eval.png").read_bytes()[:4] == b"\x89PNG"
    write_pairs([Pair("Q", "river kind", "river rude")], tmp_path / "p.jsonl")
    scored = runner.invoke(app, ["reward", "score", str(model), str(tmp_path / "p.jsonl"),
                                 "-o", str(tmp_path / "s.jsonl")])
    assert scored.exit_code == 0, scored.output
    (row,) = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert row["r_a"] > row["r_b"] and row["p_a"] > 0.5
    bad = runner.invoke(app, ["reward", "train", str(tmp_path / "train"), "--learning-rate", "0"])
    assert bad.exit_code == 1 and "--learning-rate must be positive" in bad.output


def test_learning_curve_trains_nested_shares_scores_one_test_set_and_resumes(backbone, tmp_path):
    from preference.split import split_by_prompt
    from reward.learning_curve import CurvePoint, learning_curve, save_curve

    train, test = easy_preferences(96, 3), easy_preferences(40, 4)
    config = RewardTrainingConfig(model=backbone, output_dir=str(tmp_path / "curve"), max_length=64,
                                  learning_rate=1e-3, num_train_epochs=2, per_device_train_batch_size=16,
                                  save_steps=50, center_rewards_coefficient=None, resume=True)
    full = CurvePoint(1.0, len(train), 40, 0.9, [0.8, 1.0])
    points = learning_curve(train, test, config, [0.5, 0.25], n_bootstrap=50, full=full)
    assert [p.share for p in points] == [0.25, 0.5, 1.0] and points[-1] is full
    assert [p.train_judgments for p in points[:2]] == [24, 48]
    assert all(p.decisive_test_pairs == 40 and 0 <= p.accuracy <= 1 for p in points[:2])
    # The smaller share's prompts are all inside the larger one's: a curve, not two unrelated samples.
    small, large = (split_by_prompt(train, {"part": s, "rest": 1 - s}, seed=config.seed)["part"] for s in (0.25, 0.5))
    assert {r.prompt for r in small} < {r.prompt for r in large}

    finished = (tmp_path / "curve" / "share-0.25" / "model" / "rlhfkit_reward.json").stat().st_mtime_ns
    again = learning_curve(train, test, config, [0.25, 0.5], n_bootstrap=50)
    assert [p.accuracy for p in again] == [p.accuracy for p in points[:2]]  # resumed: nothing retrained
    assert (tmp_path / "curve" / "share-0.25" / "model" / "rlhfkit_reward.json").stat().st_mtime_ns == finished

    files = save_curve(points, tmp_path / "out")
    assert json.loads(files["json"].read_text())[1]["train_judgments"] == 48
    assert files["png"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        learning_curve(train, test, config, [1.0])


def test_a_trained_model_has_a_hub_model_card_that_eval_extends(trained, tmp_path):
    from huggingface_hub import ModelCard

    result, out = trained
    card = ModelCard.load(result.model_dir / "README.md")  # the Hub's own parser reads it
    assert card.data.library_name == "transformers" and "reward-model" in card.data.tags
    assert card.data.rlhfkit_metrics["pairs"] == 128
    assert "load_reward_model" in card.text and "## Evaluation" not in card.text
    records = tmp_path / "held"
    save_preferences(easy_preferences(40, 2), records)
    # The run folder, not its model/: it points to the model it saved.
    evaluated = CliRunner().invoke(app, ["reward", "eval", str(out), str(records), "-o", str(tmp_path / "eval"),
                                         "--n-bootstrap", "200"], terminal_width=200)
    assert evaluated.exit_code == 0, evaluated.output
    card = ModelCard.load(result.model_dir / "README.md")
    assert "## Evaluation" in card.text and str(records) in card.text
    accuracy_saved = card.data.rlhfkit_metrics[f"eval/{records}"]["accuracy"]
    assert accuracy_saved == json.loads((tmp_path / "eval" / "eval.json").read_text())["accuracy"]
