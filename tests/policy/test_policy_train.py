"""SFT, DPO, GRPO and RLOO with TRL's real trainers on a tiny policy (real SmolLM2 tokenizer and chat template)."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest

from policy.dpo import DPOTrainingConfig, WeightedDPOTrainer, dpo_rows, train_dpo
from policy.model import load_policy
from policy.prompts import builtin_prompts
from policy.rl import RLTrainingConfig, train_rl
from policy.sft import SFTTrainingConfig, train_sft
from preference.errors import DataError
from preference.schema import Label, PreferenceRecord, Strength
from tests.policy_support import BAD, GOOD, answer_logprob, easy_preferences, tiny_policy, tiny_reward_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    return tiny_policy(tmp_path_factory.mktemp("policy") / "tiny")


def margin(model_dir: str, prompts: list[str]) -> float:
    model, tokenizer = load_policy(model_dir)
    return sum(answer_logprob(model, tokenizer, p, GOOD) - answer_logprob(model, tokenizer, p, BAD)
               for p in prompts) / len(prompts)


def test_dpo_moves_probability_to_the_preferred_answer(base, tmp_path):
    records = easy_preferences(16)
    config = DPOTrainingConfig(model=base, output_dir=str(tmp_path / "dpo"), max_steps=12, learning_rate=5e-3,
                               per_device_train_batch_size=4, beta=0.1, logging_steps=2, save_steps=100)
    summary = train_dpo(records, config)
    prompts = [r.prompt for r in records[:6]]
    assert margin(summary["final_model"], prompts) > margin(base, prompts) + 1.0
    assert summary["pairs"] == 16 and summary["weighted_sampling"] is False  # one strength: uniform draws
    out = tmp_path / "dpo"
    assert (out / "model" / "adapter_config.json").is_file()  # LoRA by default
    assert json.loads((out / "model" / "rlhfkit_policy.json").read_text())["method"] == "dpo"
    assert (out / "curves.png").stat().st_size > 0
    history = json.loads((out / "train_log.json").read_text())
    margins = [e["rewards/margins"] for e in history if "rewards/margins" in e]
    assert margins[-1] > margins[0]


def test_dpo_rows_apply_tie_policy_and_strength_weights():
    records = easy_preferences(3, strength=None)
    records[0] = PreferenceRecord(prompt="p0", response_a="x", response_b="y", label=Label.A,
                                  strength=Strength.STRONG, annotator="r", source="t")
    records[1] = PreferenceRecord(prompt="p1", response_a="x", response_b="y", label=Label.B,
                                  strength=Strength.SLIGHT, annotator="r", source="t")
    tie = PreferenceRecord(prompt="p3", response_a="u", response_b="v", label=Label.TIE, annotator="r", source="t")
    rows, weights, report = dpo_rows(records + [tie], DPOTrainingConfig(ties="margin0", system_prompt="Be brief."))
    assert weights == [2.0, 0.5, 1.0, 1.0, 1.0]  # strong, slight, no strength, the tie in both orders
    assert rows[1]["chosen"] == [{"role": "assistant", "content": "y"}]
    assert rows[0]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "p0"}]
    assert {(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows[3:]} == {("u", "v"), ("v", "u")}
    assert report["kept"] == {"a": 2, "b": 1, "tie": 1}  # easy_preferences(3)[2] prefers a
    rows, weights, report = dpo_rows(records + [tie], DPOTrainingConfig())
    assert len(rows) == 3 and report["dropped"] == {"tie": 1}


def test_strength_weighted_sampler_draws_strong_pairs_more_often(base, tmp_path):
    records = [PreferenceRecord(prompt=f"p{i}", response_a=GOOD, response_b=BAD, label=Label.A,
                                strength=Strength.STRONG if i == 0 else Strength.SLIGHT, annotator="r", source="t")
               for i in range(5)]
    config = DPOTrainingConfig(model=base, output_dir=str(tmp_path / "w"))
    rows, weights, _ = dpo_rows(records, config)
    from datasets import Dataset
    from trl import DPOConfig

    from policy.model import load_policy_tokenizer

    trainer = WeightedDPOTrainer(model=base, args=DPOConfig(output_dir=str(tmp_path / "w"), bf16=False,
                                                            report_to=[]),
                                 train_dataset=Dataset.from_list(rows), processing_class=load_policy_tokenizer(base),
                                 sample_weights=weights)
    sampler = trainer._get_train_sampler()
    draws = Counter(i for _ in range(400) for i in sampler)
    assert draws[0] > 2.5 * max(draws[i] for i in range(1, 5))  # weight 2 vs 0.5: about four times as often


def test_dpo_refuses_empty_and_tie_only_data(base, tmp_path):
    config = DPOTrainingConfig(model=base, output_dir=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="empty"):
        train_dpo([], config)
    ties = [PreferenceRecord(prompt="p", response_a="a", response_b="b", label=Label.TIE, annotator="r",
                             source="t")]
    with pytest.raises(ValueError, match="only ties to train on.*DPO needs pairs where one response is preferred"):
        train_dpo(ties, DPOTrainingConfig(model=base, output_dir=str(tmp_path / "y"), ties="margin0"))
    with pytest.raises(ValueError, match="loss_type.*unknown: nope"):
        DPOTrainingConfig(loss_type=["nope"]).validate()
    assert not (tmp_path / "x").exists()  # bad input fails before any work or folder


def test_dpo_ipo_loss_and_full_finetuning_run(base, tmp_path):
    summary = train_dpo(easy_preferences(8), DPOTrainingConfig(
        model=base, output_dir=str(tmp_path / "ipo"), loss_type=["ipo"], lora=False, max_steps=2,
        per_device_train_batch_size=4, save_steps=100))
    assert (tmp_path / "ipo" / "model" / "model.safetensors").is_file()  # full weights, no adapter
    assert summary["lora"] is False


def test_dpo_resumes_from_its_last_checkpoint(base, tmp_path, caplog):
    out = tmp_path / "resume"
    first = DPOTrainingConfig(model=base, output_dir=str(out), max_steps=2, save_steps=2, logging_steps=1,
                              per_device_train_batch_size=4)
    train_dpo(easy_preferences(16), first)
    with pytest.raises(ValueError, match="already holds a training run"):
        train_dpo(easy_preferences(16), first)
    torn = out / "checkpoints" / "checkpoint-9"  # a save cut short (kill, full disk): no trainer_state.json
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"\0" * 10)
    again = DPOTrainingConfig(**{**first.__dict__, "max_steps": 4, "resume": True})
    with caplog.at_level(logging.INFO):
        train_dpo(easy_preferences(16), again)
    assert any("not saved completely" in r.message for r in caplog.records)
    assert any("resuming from" in r.message and "checkpoint-2" in r.message for r in caplog.records)
    steps = [e["step"] for e in json.loads((out / "train_log.json").read_text()) if "loss" in e]
    assert steps == [1, 2, 3, 4]  # steps 1-2 come from the checkpoint's state, 3-4 were trained now
    assert (out / "checkpoints" / "checkpoint-4").is_dir()


def test_sft_learns_the_completions(base, tmp_path):
    rows = [{"prompt": f"Will you help me with task {i}?", "completion": GOOD} for i in range(8)]
    rows.append({"messages": [{"role": "user", "content": "Will you help?"}, {"role": "assistant", "content": GOOD}]})
    summary = train_sft(rows, SFTTrainingConfig(model=base, output_dir=str(tmp_path / "sft"), max_steps=16,
                                                learning_rate=1e-2, per_device_train_batch_size=4, save_steps=100))
    model, tokenizer = load_policy(summary["final_model"])
    base_model, _ = load_policy(base)
    prompt = "Will you help me with task 3?"
    assert answer_logprob(model, tokenizer, prompt, GOOD) > answer_logprob(base_model, tokenizer, prompt, GOOD) + 3
    assert summary["examples"] == 9


def test_sft_names_bad_rows():
    with pytest.raises(DataError) as caught:
        train_sft([{"prompt": "p", "completion": ""}, {"messages": [{"role": "user", "content": "u"}]}],
                  SFTTrainingConfig(), where="sft.jsonl")
    text = str(caught.value) + " ".join(str(i) for i in caught.value.issues)
    assert "sft.jsonl:1" in text and "completion" in text and "sft.jsonl:2" in text and "messages" in text


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_online_rl_with_verifier_and_callable_rewards(base, tmp_path, algo):
    def lowercase(prompts, completions, **_):
        return [float(c[0]["content"] == c[0]["content"].lower()) for c in completions]

    out = tmp_path / algo
    # A reward model on MiniLM's tokenizer scoring a SmolLM2-tokenizer policy: it encodes the text itself.
    rm_folder = tmp_path / "rm"
    tiny_reward_model(rm_folder)
    config = RLTrainingConfig(model=base, output_dir=str(out), algo=algo, max_steps=3, num_generations=4,
                              per_device_train_batch_size=4, max_completion_length=8, verifier="loose",
                              reward_models=[str(rm_folder)], reward_weights=[0.5, 1.0, 1.0],
                              learning_rate=1e-2, logging_steps=1, save_steps=100)
    summary = train_rl(builtin_prompts(6), config, extra_rewards=[lowercase])
    history = json.loads((out / "train_log.json").read_text())
    logged = {key for entry in history for key in entry}
    assert {"reward", "kl", "rewards/ifeval/mean", "rewards/lowercase/mean", "rewards/reward_model_0/mean"} <= logged
    assert (out / "curves.png").stat().st_size > 0
    from safetensors.torch import load_file

    adapter = load_file(out / "model" / "adapter_model.safetensors")
    assert any(name.endswith("lora_B.weight") and tensor.abs().sum() > 0 for name, tensor in adapter.items())
    assert summary["method"] == algo


def test_rl_config_errors():
    with pytest.raises(ValueError, match="multiple of num_generations"):
        RLTrainingConfig(per_device_train_batch_size=3, num_generations=2).validate()
    with pytest.raises(ValueError, match="algo must be one of"):
        RLTrainingConfig(algo="ppo2").validate()  # type: ignore[arg-type]
    from policy.rewards import reward_functions

    with pytest.raises(ValueError, match="no reward"):
        reward_functions(RLTrainingConfig())


def test_a_lora_run_trains_on_top_of_an_earlier_adapter(base, tmp_path):
    sft = train_sft([{"prompt": "Will you help?", "completion": GOOD}] * 4, SFTTrainingConfig(
        model=base, output_dir=str(tmp_path / "sft"), max_steps=2, learning_rate=1e-2, save_steps=100))
    assert (tmp_path / "sft" / "model" / "adapter_config.json").is_file()
    summary = train_dpo(easy_preferences(8), DPOTrainingConfig(model=sft["final_model"],
                                                               output_dir=str(tmp_path / "dpo"), max_steps=1,
                                                               per_device_train_batch_size=4, save_steps=100))
    from peft import PeftConfig

    # The new adapter sits on the merged SFT weights, not a second adapter stacked on the base.
    assert PeftConfig.from_pretrained(summary["final_model"]).peft_type == "LORA"
    model, tokenizer = load_policy(summary["final_model"])
    assert not any("lora" in name for name, _ in model.named_parameters())  # merged on load
