"""The IFEval verifier annotator on real IFEval prompts, with responses written to pass or fail named instructions."""

from __future__ import annotations

import json
import logging
import socket
import sys
from pathlib import Path

import pytest

from annotation.base import Annotator
from annotation.verifier import VERIFIER_NAME, VerifierAnnotator, decide
from preference.errors import DataError
from preference.pairs import Pair
from preference.schema import Label, Strength
from reward.ifeval import (
    UnknownInstructionError,
    VerificationError,
    ensure_punkt,
    ifeval_pair,
    instruction_ids,
    load_ifeval_prompts,
    prompt_text,
    punkt_data_dir,
    verify_response,
)
from tests.conftest import IFEVAL_PATH, needs

pytestmark = needs(IFEVAL_PATH)

# Key 2216: all lowercase, no commas, a postscript starting with P.P.S
LAKE_ALL = ("i would love to see you at the lake this weekend because the weather looks great and the water is "
            "warm.\n\np.p.s bring snacks for everyone")
LAKE_COMMA = LAKE_ALL.replace("great and", "great, and")  # fails no_comma (strict) only
LAKE_NONE = "I would love to see you at the lake this weekend, because the weather looks great."  # fails all three
LAKE_CAPS = LAKE_ALL.replace("i would", "I would")  # fails english_lowercase only


@pytest.fixture(scope="module")
def prompts() -> dict[int, dict]:
    return {row["key"]: row for row in load_ifeval_prompts(IFEVAL_PATH)}


@pytest.fixture(scope="module")
def verifier() -> VerifierAnnotator:
    return VerifierAnnotator()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly (the sandbox has no network; this makes it explicit)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def judge(verifier, prompt, a, b):
    [record] = verifier.annotate([ifeval_pair(prompt, a, b)])
    return record


def test_reads_all_541_real_prompts(prompts):
    assert len(prompts) == 541
    used = {i for row in prompts.values() for i in row["instruction_id_list"]}
    assert used == set(instruction_ids()) and len(used) == 25


def test_is_an_annotator(verifier):
    assert isinstance(verifier, Annotator)
    assert verifier.name == VERIFIER_NAME == "verifier:ifeval"


def test_no_comma_prefers_the_response_without_commas(verifier, prompts, no_network):
    prompt = prompts[1001]  # "You are not allowed to use any commas in your response."
    record = judge(verifier, prompt, "To Tokyo we go. Then to Kyoto by the sea.", "First Tokyo, then Kyoto.")
    assert (record.label, record.strength) == (Label.A, Strength.STRONG)
    assert record.annotator == record.source == "verifier:ifeval"
    swapped = judge(verifier, prompt, "First Tokyo, then Kyoto.", "To Tokyo we go. Then to Kyoto by the sea.")
    assert (swapped.label, swapped.strength) == (Label.B, Strength.STRONG)


def test_strength_follows_the_score_gap_on_three_instructions(verifier, prompts):
    prompt = prompts[2216]
    assert prompt["instruction_id_list"] == ["change_case:english_lowercase", "punctuation:no_comma",
                                             "detectable_content:postscript"]
    clear = judge(verifier, prompt, LAKE_ALL, LAKE_COMMA)  # 3/3 vs 2/3
    assert (clear.label, clear.strength) == (Label.A, Strength.CLEAR)
    strong = judge(verifier, prompt, LAKE_NONE, LAKE_ALL)  # 0/3 vs 3/3
    assert (strong.label, strong.strength) == (Label.B, Strength.STRONG)
    meta = clear.metadata["verifier"]
    assert meta["score_a"] == 1.0 and meta["score_b"] == pytest.approx(2 / 3)
    assert meta["b"]["failed"] == ["punctuation:no_comma"]
    assert meta["b"]["passed"] == ["change_case:english_lowercase", "detectable_content:postscript"]
    assert [r["instruction_id"] for r in meta["a"]["results"]] == prompt["instruction_id_list"]
    assert "failed: punctuation:no_comma" in meta["b"]["feedback"]
    # the pair's own metadata travels with the judgment
    assert clear.metadata["key"] == 2216 and clear.metadata["kwargs"] == prompt["kwargs"]
    json.dumps(clear.metadata)  # storable


def test_slight_needs_a_small_gap(verifier, prompts):
    # Real IFEval prompts have at most 3 instructions (gaps of 1/3 or more); a fourth, real instruction gives 1/4.
    row = dict(prompts[2216])
    row["instruction_id_list"] = row["instruction_id_list"] + ["length_constraints:number_sentences"]
    row["kwargs"] = row["kwargs"] + [{"relation": "less than", "num_sentences": 6}]
    record = judge(verifier, row, LAKE_ALL, LAKE_COMMA)  # 4/4 vs 3/4
    assert (record.label, record.strength) == (Label.A, Strength.SLIGHT)
    assert decide(0.5, 0.25) == (Label.A, Strength.SLIGHT)
    assert decide(0.0, 1 / 3) == (Label.B, Strength.CLEAR)
    assert decide(0.0, 2 / 3) == (Label.B, Strength.STRONG)


def test_equal_scores_tie_or_both_bad(verifier, prompts):
    prompt = prompts[2216]
    both_good = judge(verifier, prompt, LAKE_ALL, LAKE_ALL.replace("snacks", "fruit"))
    assert (both_good.label, both_good.strength) == (Label.TIE, None)
    both_bad = judge(verifier, prompt, LAKE_NONE, "Hello, friend. Let us meet at the lake, soon.")
    assert (both_bad.label, both_bad.strength) == (Label.BOTH_BAD, None)
    half = judge(verifier, prompt, LAKE_COMMA, LAKE_CAPS)  # 2/3 each, different failures
    assert (half.label, half.strength) == (Label.TIE, None)
    assert half.metadata["verifier"]["a"]["failed"] != half.metadata["verifier"]["b"]["failed"]


def test_bullet_lists(verifier, prompts):
    prompt = prompts[2314]  # exactly 3 markdown bullet points
    record = judge(verifier, prompt, "* Domino\n* Oreo\n* Panda\n* Zebra", "* Domino\n* Oreo\n* Panda")
    assert (record.label, record.strength) == (Label.B, Strength.STRONG)


def test_sentence_counting_works_offline_with_the_packaged_punkt_data(verifier, prompts, no_network):
    import nltk

    prompt = prompts[1268]  # fewer than 6 sentences
    assert prompt["kwargs"] == [{"relation": "less than", "num_sentences": 6}]
    short = "I felt stressed this week. So I wrote down my worries. Then I went for a long walk."
    long = "I felt stressed. I wrote. I walked. I slept. I ate. I read. I sang. I rested."
    record = judge(verifier, prompt, long, short)
    assert (record.label, record.strength) == (Label.B, Strength.STRONG)
    # NLTK found its sentence model in the llama-index-core wheel (located on disk, never imported)
    folder = ensure_punkt()
    assert folder == punkt_data_dir()
    assert "llama_index/core/_static/nltk_cache" in folder.as_posix()
    assert str(folder) in nltk.data.path
    found = Path(str(nltk.data.find("tokenizers/punkt_tab/english/")))
    assert found.is_relative_to(folder)
    assert "llama_index.core" not in sys.modules


def test_loose_mode_forgives_a_preamble_line(prompts):
    prompt = prompts[1593]  # a poem all in lowercase letters
    preamble = "Here is your poem:\nthe river runs slow beneath the willow trees\nand barnet laughs with me nearby"
    capitals = "The River runs slow beneath the Willow trees\nAnd Barnet laughs with me beside the water"
    strict = judge(VerifierAnnotator(mode="strict"), prompt, preamble, capitals)
    loose = judge(VerifierAnnotator(mode="loose"), prompt, preamble, capitals)
    assert strict.label == Label.BOTH_BAD
    assert (loose.label, loose.strength) == (Label.A, Strength.STRONG)
    assert loose.metadata["verifier"]["mode"] == "loose"
    score, [check] = verify_response(preamble, prompt["instruction_id_list"], prompt["kwargs"], prompt["prompt"],
                                     mode="strict")
    assert score == 0.0 and (check.strict, check.loose) == (False, True)


def test_loose_mode_forgives_markdown_asterisks(prompts):
    prompt = prompts[1571]  # ... must contain the keywords "land" and "river" (and more instructions)
    position = prompt["instruction_id_list"].index("keywords:existence")
    ids, kwargs = ["keywords:existence"], [prompt["kwargs"][position]]
    assert kwargs == [{"keywords": ["land", "river"]}]
    response = "The **riv**er crosses the **la**nd."  # bold markup splits both keywords
    strict, _ = verify_response(response, ids, kwargs, prompt["prompt"], "strict")
    loose, _ = verify_response(response, ids, kwargs, prompt["prompt"], "loose")
    assert (strict, loose) == (0.0, 1.0)


def test_chat_prompts_use_the_last_user_message(verifier, prompts):
    row = prompts[1001]
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": row["prompt"]}]
    assert prompt_text(chat) == row["prompt"]
    pair = Pair(chat, "Tokyo then Kyoto.", "Tokyo, then Kyoto.",
                {"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]})
    [record] = verifier.annotate([pair])
    assert record.label == Label.A and record.prompt == chat
    with pytest.raises(VerificationError, match="no user message"):
        prompt_text([{"role": "system", "content": "x"}])


def test_pairs_without_instructions_are_skipped_and_logged_once(verifier, prompts, caplog):
    plain = [Pair(f"Say something {i}.", "Yes.", "No.") for i in range(3)]
    good = ifeval_pair(prompts[1001], "No commas here.", "Commas, here.")
    with caplog.at_level(logging.INFO, logger="annotation.verifier"):
        results = verifier.annotate([*plain, good])
    assert results[:3] == [None, None, None] and results[3].label == Label.A
    assert verifier.last_skipped == {"no verifiable instructions": 3}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "3 of 4 pair(s)" in messages[0]


def test_unknown_instruction_ids_are_reported_not_skipped(verifier, prompts, caplog):
    row = dict(prompts[1001])
    row["instruction_id_list"] = ["punctuation:no_comma", "punctuation:no_semicolon"]
    row["kwargs"] = [{}, {}]
    with caplog.at_level(logging.WARNING, logger="annotation.verifier"):
        assert verifier.annotate([ifeval_pair(row, "a b", "a, b")]) == [None]
    assert "punctuation:no_semicolon" in caplog.text
    assert list(verifier.last_skipped) == ["unknown instruction id 'punctuation:no_semicolon'"]
    with pytest.raises(UnknownInstructionError, match="no_semicolon"):
        verify_response("a b", row["instruction_id_list"], row["kwargs"])


def test_missing_kwargs_are_an_error_not_a_random_draw(verifier, prompts):
    # IFEval's checkers draw a missing parameter at random; the verifier refuses instead.
    ids = ["detectable_format:number_bullet_lists"]
    with pytest.raises(VerificationError, match="missing num_bullets"):
        verify_response("* a\n* b", ids, [{}])
    with pytest.raises(VerificationError, match="unexpected num_words"):
        verify_response("* a\n* b", ids, [{"num_bullets": 2, "num_words": 3}])
    with pytest.raises(VerificationError, match="2 entries for 1"):
        verify_response("* a\n* b", ids, [{}, {}])
    row = {"key": 1, "prompt": "List.", "instruction_id_list": ids, "kwargs": [{}]}
    assert verifier.annotate([ifeval_pair(row, "* a", "* b")]) == [None]
    assert verifier.last_skipped == {"bad kwargs for detectable_format:number_bullet_lists": 1}
    no_kwargs = Pair("List.", "* a", "* b", {"instruction_id_list": ids})
    assert verifier.annotate([no_kwargs]) == [None]
    assert verifier.last_skipped == {"kwargs missing": 1}


def test_empty_response_fails_every_instruction(prompts):
    row = prompts[2216]
    score, results = verify_response("", row["instruction_id_list"], row["kwargs"], row["prompt"])
    assert score == 0.0 and len(results) == 3 and not any(c.strict or c.loose for c in results)


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="strict' or 'loose"):
        VerifierAnnotator(mode="lenient")  # type: ignore[arg-type]


def test_verdicts_are_deterministic(verifier, prompts):
    # english_lowercase runs langdetect, which samples at random unless seeded
    pairs = [ifeval_pair(prompts[key], LAKE_ALL, LAKE_CAPS) for key in (2216, 1593, 1051)]
    first = [r.to_row() | {"timestamp": ""} for r in verifier.annotate(pairs)]
    second = [r.to_row() | {"timestamp": ""} for r in verifier.annotate(pairs)]
    assert first == second
    from langdetect import DetectorFactory

    assert DetectorFactory.seed == 0


def test_bad_prompt_files_name_line_and_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    rows = [
        {"key": 1, "prompt": "ok", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 2, "prompt": "", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 3, "prompt": "x", "instruction_id_list": ["nope:nothing"], "kwargs": [{}]},
        {"key": 4, "prompt": "x", "instruction_id_list": ["punctuation:no_comma"]},
        {"key": 1, "prompt": "x", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    with pytest.raises(DataError) as info:
        load_ifeval_prompts(path)
    found = {(issue.line, issue.field) for issue in info.value.issues}
    assert found == {(2, "prompt"), (3, "instruction_id_list"), (4, "kwargs"), (5, "key"), (6, None)}
    assert "nope:nothing" in str(info.value)
    with pytest.raises(FileNotFoundError):
        load_ifeval_prompts(tmp_path / "missing.jsonl")
