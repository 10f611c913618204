"""Prompts, batched generation (resume, long prompts), candidate pairs, and policy evaluation on tiny policies."""

from __future__ import annotations

import gzip
import json

import pytest

from policy.candidate_pairs import candidate_pairs
from policy.evaluate import PolicyEvalConfig, evaluate_policy, paired_delta, pass_rates, win_rate
from policy.generate import GenerationConfig, generate_candidates, read_candidates
from policy.model import PolicyModelError, load_policy
from policy.prompts import (
    MAX_BUILTIN_PROMPTS,
    SOMETIMES_FOLLOWED,
    PromptItem,
    builtin_prompts,
    read_prompts,
    split_prompts,
)
from preference.errors import DataError
from reward.ifeval import verify_response
from reward.model import RewardModel
from tests.conftest import IFEVAL_PATH, needs
from tests.policy_support import tiny_policy, tiny_reward_model
from tests.tiny_models import save_tiny, tiny_causal_lm

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    return tiny_policy(tmp_path_factory.mktemp("policy") / "tiny")


@pytest.fixture(scope="module")
def scorer(tmp_path_factory) -> RewardModel:
    return tiny_reward_model(tmp_path_factory.mktemp("rm") / "rm")


# -- prompts --------------------------------------------------------------------------------------------------------
def test_builtin_prompts_are_distinct_and_verifiable():
    items = builtin_prompts()
    assert len(items) == MAX_BUILTIN_PROMPTS == 16 * 13 * 2
    assert len({item.prompt for item in items}) == 416 and len({item.key for item in items}) == 416
    for item in items:
        score, _ = verify_response("x", item.metadata["instruction_id_list"], item.metadata["kwargs"], item.prompt)
        assert 0.0 <= score <= 1.0  # every constraint has every parameter its checker needs
    assert builtin_prompts(10, seed=1) != builtin_prompts(10, seed=2)
    with pytest.raises(ValueError, match="1 to 416"):
        builtin_prompts(0)


def test_builtin_prompts_can_be_limited_to_some_constraints():
    items = builtin_prompts(constraints=SOMETIMES_FOLLOWED)
    assert len(items) == 16 * len(SOMETIMES_FOLLOWED) * 2
    assert {i.metadata["instruction_id_list"][0] for i in items} == set(SOMETIMES_FOLLOWED)
    with pytest.raises(ValueError, match="not keywords:nonsense"):
        builtin_prompts(constraints=["keywords:nonsense"])


def test_read_prompts_names_every_bad_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join([
        json.dumps({"prompt": "ok", "metadata": {"topic": "t"}}),
        "{not json",
        json.dumps({"metadata": {}}),
        json.dumps({"prompt": "x", "instruction_id_list": ["punctuation:no_semicolon"], "kwargs": [{}]}),
        json.dumps({"prompt": "y", "instruction_id_list": ["startend:end_checker"], "kwargs": [{}]}),
        json.dumps({"prompt": [{"role": "user", "content": "chat"}]}),
    ]) + "\n")
    with pytest.raises(DataError) as caught:
        read_prompts(path)
    found = {(issue.line, issue.field) for issue in caught.value.issues}
    assert found == {(2, None), (3, "prompt"), (4, "instruction_id_list"), (5, "kwargs")}


@needs(IFEVAL_PATH)
def test_reads_ifeval_input_data_as_is():
    items = read_prompts(IFEVAL_PATH)
    assert len(items) == 541 and all(item.verifiable for item in items)
    assert items[0].key == str(items[0].metadata["key"])
    train, test = split_prompts(items, 0.25, seed=0)
    assert len(test) == 135 and not {i.prompt for i in train} & {i.prompt for i in test}


def test_read_prompts_gzip_and_empty(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps({"prompt": "hello"}) + "\n")
    assert read_prompts(path) == [PromptItem("hello", {})]
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no prompts"):
        read_prompts(tmp_path / "empty.jsonl")


# -- generation -----------------------------------------------------------------------------------------------------
def test_generation_writes_k_candidates_per_prompt_with_metadata(policy_dir, tmp_path):
    prompts = builtin_prompts(6)
    config = GenerationConfig(model=policy_dir, num_candidates=3, max_new_tokens=8, batch_size=4, seed=1)
    result = generate_candidates(prompts, config, tmp_path / "c.jsonl", progress=False)
    rows = read_candidates(tmp_path / "c.jsonl")
    assert result.prompts == 6 and len(rows) == 6 and result.new_tokens > 0
    assert {r["key"] for r in rows} == {p.key for p in prompts}
    assert all(len(r["candidates"]) == 3 and len(r["finish_reasons"]) == 3 for r in rows)
    by_key = {p.key: p for p in prompts}
    assert all(r["metadata"] == by_key[r["key"]].metadata for r in rows)
    assert not (tmp_path / "c.jsonl.partial").exists()
    with pytest.raises(FileExistsError):
        generate_candidates(prompts, config, tmp_path / "c.jsonl", progress=False)


def test_interrupted_generation_resumes_to_the_same_file(policy_dir, tmp_path):
    prompts = builtin_prompts(7)
    config = GenerationConfig(model=policy_dir, num_candidates=2, max_new_tokens=6, batch_size=3, seed=5)
    generate_candidates(prompts, config, tmp_path / "full.jsonl", progress=False)
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    # An interrupted run: the first chunk (3 prompts) written, one whole line of the second, then a torn line.
    (tmp_path / "resumed.jsonl.partial").write_text("".join(lines[:4]) + lines[4][:25])
    result = generate_candidates(prompts, config, tmp_path / "resumed.jsonl", progress=False)
    assert (tmp_path / "resumed.jsonl").read_text() == (tmp_path / "full.jsonl").read_text()  # nothing twice
    assert result.prompts == 7
    # A partial file from other settings is refused, never mixed in.
    (tmp_path / "mixed.jsonl.partial").write_text(lines[0])
    (tmp_path / "mixed.jsonl.partial.settings.json").write_text('{"model": "another"}')
    with pytest.raises(ValueError, match="other settings"):
        generate_candidates(prompts, config, tmp_path / "mixed.jsonl", progress=False)


def test_prompts_too_long_for_the_context_are_skipped_and_counted(tmp_path):
    model, tokenizer = tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2, max_position_embeddings=48)
    folder = str(save_tiny(model, tokenizer, tmp_path / "short"))
    prompts = [PromptItem("short question"), PromptItem("word " * 200)]
    result = generate_candidates(prompts, GenerationConfig(model=folder, num_candidates=1, temperature=0,
                                                           max_new_tokens=4), tmp_path / "c.jsonl", progress=False)
    assert result.prompts == 1 and result.skipped == {"prompt longer than the context allows": 1}


def test_model_without_chat_template_is_refused(tmp_path):
    model, tokenizer = tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2)
    tokenizer.chat_template = None
    folder = str(save_tiny(model, tokenizer, tmp_path / "base"))
    with pytest.raises(PolicyModelError, match="no chat template"):
        load_policy(folder)
    loaded, tok = load_policy(folder, chat_template="{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    assert tok.chat_template and tok.padding_side == "left"


def test_generation_config_errors():
    with pytest.raises(ValueError, match="identical candidates"):
        GenerationConfig(temperature=0, num_candidates=2).validate()
    with pytest.raises(ValueError, match="top_p"):
        GenerationConfig(top_p=0).validate()


# -- candidate pairs ------------------------------------------------------------------------------------------------
def test_candidate_pairs_strategies(scorer):
    rows = [{"key": "k1", "prompt": "p1", "metadata": {"instruction_id_list": ["x"]}, "model": "m",
             "candidates": ["one", "two", "three"]},
            {"key": "k2", "prompt": "p2", "metadata": {}, "model": "m", "candidates": ["same", "same", " "]}]
    pairs, skipped = candidate_pairs(rows, "all")
    assert len(pairs) == 3 and skipped == {"fewer than two distinct non-empty candidates": 1}
    assert pairs[0].metadata == {"instruction_id_list": ["x"], "key": "k1", "generator": "m"}
    assert {frozenset((p.response_a, p.response_b)) for p in pairs} == {
        frozenset(("one", "two")), frozenset(("one", "three")), frozenset(("two", "three"))}
    assert len(candidate_pairs(rows, "random")[0]) == 1
    [best_worst], _ = candidate_pairs(rows, "best_worst", scorer=scorer)
    rewards = dict(zip(["one", "two", "three"], scorer.score(["p1"] * 3, ["one", "two", "three"])))
    assert {best_worst.response_a, best_worst.response_b} == {max(rewards, key=rewards.get),
                                                              min(rewards, key=rewards.get)}
    with pytest.raises(ValueError, match="needs|ranks candidates"):
        candidate_pairs(rows, "best_worst")


# -- evaluation -----------------------------------------------------------------------------------------------------
def test_pass_rates_match_hand_computed_values():
    rows = [{"key": "a", "n": 2, "strict": 2, "loose": 2}, {"key": "b", "n": 3, "strict": 1, "loose": 2},
            {"key": "c", "n": 1, "strict": 0, "loose": 1}]
    rates = pass_rates(rows, PolicyEvalConfig(n_bootstrap=200))
    assert rates["prompt_strict"]["value"] == pytest.approx(1 / 3)
    assert rates["prompt_loose"]["value"] == pytest.approx(2 / 3)
    assert rates["instruction_strict"]["value"] == pytest.approx(3 / 6)
    assert rates["instruction_loose"]["value"] == pytest.approx(5 / 6)
    for level in ("prompt_strict", "instruction_loose"):
        assert rates[level]["ci_low"] <= rates[level]["value"] <= rates[level]["ci_high"]
    before = [{"key": "a", "n": 1, "strict": 0, "loose": 0}, {"key": "b", "n": 1, "strict": 1, "loose": 1}]
    after = [{"key": "a", "n": 1, "strict": 1, "loose": 1}, {"key": "b", "n": 1, "strict": 1, "loose": 1}]
    assert paired_delta(before, after, "prompt_strict")["delta"] == pytest.approx(0.5)


def test_win_rate_counts_ties_half(scorer):
    prompts = [PromptItem(f"q{i}", {"key": f"k{i}"}) for i in range(4)]
    answers = {f"k{i}": f"answer {i}" for i in range(4)}
    same = win_rate(scorer, prompts, answers, dict(answers), PolicyEvalConfig(n_bootstrap=100))
    assert same["value"] == 0.5 and same["n_prompts"] == 4


def test_evaluate_policy_against_a_reference(policy_dir, scorer, tmp_path):
    other = tiny_policy(tmp_path / "other", seed=7)
    prompts = builtin_prompts(5)
    report = evaluate_policy(policy_dir, prompts, tmp_path / "eval", reference_model=other, reward_model=scorer,
                             config=PolicyEvalConfig(max_new_tokens=6, n_bootstrap=100))
    assert report["verifier"]["n_prompts"] == 5 and report["win_rate"]["n_prompts"] == 5
    assert set(report["verifier_delta"]) == {"prompt_strict", "prompt_loose", "instruction_strict",
                                             "instruction_loose"}
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["verifier"] == report["verifier"]
    assert (tmp_path / "eval" / "eval.png").stat().st_size > 0
    answers = read_candidates(tmp_path / "eval" / "answers-policy.jsonl")
    assert all(row["finish_reasons"][0] in ("stop", "length") for row in answers)
    with pytest.raises(ValueError, match="reference"):
        evaluate_policy(policy_dir, prompts, tmp_path / "e2", reward_model=scorer)
    again = evaluate_policy(policy_dir, prompts, tmp_path / "eval", reference_model=other,
                            config=PolicyEvalConfig(max_new_tokens=6, n_bootstrap=100))
    assert again["verifier"] == report["verifier"]  # cached answers reused
    with pytest.raises(ValueError, match="another model"):  # never another model's answers
        evaluate_policy(other, prompts, tmp_path / "eval", config=PolicyEvalConfig(max_new_tokens=6))


def test_verification_never_depends_on_the_global_random_state():
    """IFEval's letter checker swaps an invalid letter ("!", as in two IFEval prompts) for a random one."""
    import random

    verdicts = set()
    for seed in range(6):
        random.seed(seed)
        before = random.getstate()
        score, _ = verify_response("Wow!!! Great!!!", ["keywords:letter_frequency"],
                                   [{"letter": "!", "let_frequency": 3, "let_relation": "at least"}])
        assert random.getstate() == before  # the caller's random stream is left alone
        verdicts.add(score)
    assert len(verdicts) == 1
