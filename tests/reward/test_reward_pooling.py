"""Mean pooling and the linear-probe head start (`reward.pooling`, `reward.linear_probe`) with TRL's real
RewardTrainer on tiny encoders built from the real MiniLM tokenizer."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForSequenceClassification

from reward.config import RewardTrainingConfig
from reward.data import prepare
from reward.linear_probe import head_inputs, head_module, init_head_from_probe
from reward.meta import RewardMeta
from reward.model import RewardModel, load_reward_model
from reward.pooling import MaskedMeanPooler, apply_pooling, resolve_pooling
from reward.train import load_backbone, load_tokenizer_with_pad, train_reward_model
from rlhfkit.models.registry import resolve_model
from tests.reward.test_reward_train import accuracy, easy_preferences
from tests.tiny_models import save_tiny, tiny_encoder


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    model, tokenizer = tiny_encoder(hidden_size=64, num_layers=2)
    return str(save_tiny(model, tokenizer, tmp_path_factory.mktemp("tiny") / "backbone"))


def rows_for(records, tokenizer) -> list[dict]:
    return prepare(records, tokenizer, RewardTrainingConfig(max_length=64)).rows


def test_auto_pooling_follows_the_backbones_own_training(backbone):
    minilm = resolve_model("minilm-l6")  # a sentence-transformers folder: 1_Pooling says mean
    tiny, _ = tiny_encoder(hidden_size=32, num_layers=1)
    assert resolve_pooling("auto", minilm, tiny) == "mean"
    assert resolve_pooling("auto", backbone, tiny) == "model"  # a plain BERT folder: its own [CLS] head
    assert resolve_pooling("auto", "/no/such/folder", tiny) == "model"
    assert resolve_pooling("model", minilm, tiny) == "model"
    decoder = LlamaForSequenceClassification(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                                         num_hidden_layers=1, num_attention_heads=2, num_labels=1))
    assert resolve_pooling("auto", minilm, decoder) == "model"  # decoders keep their last-token head
    with pytest.raises(ValueError, match="pooling='mean' needs an encoder with a pooler"):
        resolve_pooling("mean", "smollm2", decoder)
    with pytest.raises(ValueError, match="pooling must be"):
        RewardTrainingConfig(pooling="max").validate()


def test_mean_pooling_ignores_padding_and_matches_a_hand_computed_mean(backbone):
    tokenizer = load_tokenizer_with_pad(backbone)
    model = load_backbone(backbone, tokenizer, "mean").eval()
    assert isinstance(model.bert.pooler, MaskedMeanPooler) and model.config.rlhfkit_pooling == "mean"
    short, long = tokenizer("a short one")["input_ids"], tokenizer("a much longer answer with many words")["input_ids"]
    scorer = RewardModel(model, tokenizer, RewardMeta("x", 64))
    together = scorer.forward_ids([long, short])
    alone = scorer.forward_ids([short])
    assert together[1] == pytest.approx(alone[0], abs=1e-5)  # the padded copy scores as the unpadded one
    with torch.inference_mode():
        states = model.bert(input_ids=torch.tensor([short])).last_hidden_state
        expected = model.classifier(states.mean(dim=1))[0, 0].item()
    assert alone[0] == pytest.approx(expected, abs=1e-5)
    assert apply_pooling(model, "mean") is model  # applying twice changes nothing


def test_mean_pooled_training_with_probe_start_learns_saves_and_reloads(backbone, tmp_path):
    out = tmp_path / "run"
    config = RewardTrainingConfig(model=backbone, output_dir=str(out), max_length=64, learning_rate=1e-3,
                                  num_train_epochs=2, per_device_train_batch_size=16, pooling="mean",
                                  head_init="linear_probe", center_rewards_coefficient=None)
    result = train_reward_model(easy_preferences(96, 0), config)
    assert json.loads((result.model_dir / "config.json").read_text())["rlhfkit_pooling"] == "mean"
    model = load_reward_model(result.model_dir)
    assert model.meta.pooling == "mean" and isinstance(model.model.bert.pooler, MaskedMeanPooler)
    assert model.meta.extra["probe_train_accuracy"] >= 0.9
    assert accuracy(model, easy_preferences(60, 1)) >= 0.9
    prompts, responses = ["Write six words."] * 3, ["river stone kind", "river stone rude", "night light music"]
    again = RewardModel.load(model.save(tmp_path / "copy"))
    assert again.score(prompts, responses) == model.score(prompts, responses)


def test_lora_with_mean_pooling_round_trips(backbone, tmp_path):
    config = RewardTrainingConfig(model=backbone, output_dir=str(tmp_path / "lora"), max_length=64,
                                  learning_rate=5e-3, num_train_epochs=3, lora=True, lora_r=8, pooling="mean",
                                  lora_target_modules=["query", "value"], center_rewards_coefficient=None)
    result = train_reward_model(easy_preferences(64, 2), config)
    model = load_reward_model(result.model_dir)
    assert model.meta.lora and model.meta.pooling == "mean"
    assert isinstance(model.model.bert.pooler, MaskedMeanPooler)
    assert accuracy(model, easy_preferences(40, 3)) >= 0.8


def test_the_linear_probe_alone_separates_an_easy_preference(backbone):
    tokenizer = load_tokenizer_with_pad(backbone)
    model = load_backbone(backbone, tokenizer, "mean")
    before = RewardModel(model, tokenizer, RewardMeta("x", 64))
    held_out = easy_preferences(60, 1)
    start = accuracy(before, held_out)
    stats = init_head_from_probe(model, tokenizer, rows_for(easy_preferences(96, 0), tokenizer))
    assert stats["probe_train_accuracy"] >= 0.9
    after = accuracy(RewardModel(model, tokenizer, before.meta), held_out)
    assert after >= 0.9 and after > start  # no fine-tuning yet: the head alone learned the rule


def test_head_inputs_keep_the_callers_order(backbone):
    tokenizer = load_tokenizer_with_pad(backbone)
    model = load_backbone(backbone, tokenizer, "mean")
    sequences = [tokenizer(text)["input_ids"] for text in ["one", "two words here now", "three four"]]
    features = head_inputs(model, tokenizer, sequences)
    for index, ids in enumerate(sequences):
        assert torch.allclose(features[index], head_inputs(model, tokenizer, [ids])[0], atol=1e-5)
    assert head_module(model) is model.classifier
