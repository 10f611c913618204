"""`annotate label` and `annotate select` through the command line, on pairs built from real IFEval prompts.

The commands are registered into a Typer app made here (the way `rlhfkit annotate` registers them)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from preference.pairs import Pair, read_pairs, write_pairs
from preference.schema import Label, Strength
from preference.store import PreferenceStore
from reward.ifeval import ifeval_pair, load_ifeval_prompts
from rlhfkit.cli.annotate_machine import register
from tests.conftest import IFEVAL_PATH, needs

pytestmark = needs(IFEVAL_PATH)

runner = CliRunner()
app = typer.Typer(no_args_is_help=True)
register(app)

LAKE_ALL = ("i would love to see you at the lake this weekend because the weather looks great and the water is "
            "warm.\n\np.p.s bring snacks for everyone")


def run(*args):
    result = runner.invoke(app, [str(a) for a in args], terminal_width=200)
    result.flat = " ".join(result.output.split())  # Rich wraps long lines; compare words
    return result


@pytest.fixture(scope="module")
def prompts():
    return {row["key"]: row for row in load_ifeval_prompts(IFEVAL_PATH)}


@pytest.fixture
def pairs_file(tmp_path, prompts):
    unknown = dict(prompts[1001], instruction_id_list=["punctuation:no_semicolon"], kwargs=[{}])
    pairs = [
        # strict and loose agree: a follows "no commas", b does not
        ifeval_pair(prompts[1001], "To Tokyo we go. Then to Kyoto by the sea.", "First Tokyo, then Kyoto."),
        # strict: both fail lowercase (both_bad); loose forgives a's preamble line (a)
        ifeval_pair(prompts[1593], "Here is your poem:\nthe river runs slow\nand barnet laughs with me by the water",
                    "The River runs slow\nAnd Barnet laughs with me beside the water"),
        # strict: a (3/3 vs 2/3, clear); loose: b's comma sits on a line loose mode may drop -> tie
        ifeval_pair(prompts[2216], LAKE_ALL, LAKE_ALL.replace("great and", "great, and")),
        Pair("Tell me a joke.", "Why did the chicken cross the road?", "No."),  # nothing to verify
        ifeval_pair(unknown, "a b", "a; b"),  # an instruction IFEval does not know
    ]
    return write_pairs(pairs, tmp_path / "pairs.jsonl")


def test_label_appends_verifier_judgments_to_the_store(tmp_path, pairs_file):
    store = tmp_path / "store"
    result = run("label", pairs_file, "--store", store, "--annotator", "verifier")
    assert result.exit_code == 0, result.output
    records = {r.metadata["key"]: r for r in PreferenceStore(store).records()}
    assert set(records) == {1001, 1593, 2216}
    assert (records[1001].label, records[1001].strength) == (Label.A, Strength.STRONG)
    assert records[1593].label == Label.BOTH_BAD
    assert (records[2216].label, records[2216].strength) == (Label.A, Strength.CLEAR)
    assert records[2216].metadata["verifier"]["b"]["failed"] == ["punctuation:no_comma"]
    assert {r.annotator for r in records.values()} == {"verifier:ifeval"}
    for text in ("pairs read │ 5", "judged │ 3", "skipped │ 2", "skipped: no verifiable instructions │ 1",
                 "skipped: unknown instruction id 'punctuation:no_semicolon' │ 1", "label a │ 2",
                 "label both_bad │ 1", "label tie │ 0", "appended 3 judgment(s)"):
        assert text in result.flat, (text, result.output)

    loose = run("label", pairs_file, "--store", store, "--mode", "loose")
    assert loose.exit_code == 0, loose.output
    assert "label tie │ 1" in loose.flat and "label a │ 2" in loose.flat
    # same annotator id and pairs: the loose verdicts supersede the strict ones in the store
    latest = {r.metadata["key"]: r for r in PreferenceStore(store).records()}
    assert len(latest) == 3 and latest[1593].label == Label.A and latest[2216].label == Label.TIE
    assert latest[1593].metadata["verifier"]["mode"] == "loose"


def test_label_errors_are_clear(tmp_path, pairs_file):
    result = run("label", pairs_file, "--store", tmp_path / "s", "--annotator", "reward")
    assert result.exit_code == 1
    assert "--annotator reward needs --reward-model" in result.flat
    assert "available: verifier, judge, reward" in run("label", pairs_file, "--store", tmp_path / "s", "-a",
                                                       "oracle").flat
    assert "unknown annotator 'gpt'" in run("label", pairs_file, "--store", tmp_path / "s", "-a", "gpt").flat

    bad_mode = run("label", pairs_file, "--store", tmp_path / "s", "--mode", "lenient")
    assert bad_mode.exit_code == 1 and "--mode must be 'strict' or 'loose'" in bad_mode.flat

    plain = write_pairs([Pair("Q", "yes", "no")], tmp_path / "plain.jsonl")
    nothing = run("label", plain, "--store", tmp_path / "s")
    assert nothing.exit_code == 1 and "nothing written" in nothing.flat
    assert not PreferenceStore.is_store(tmp_path / "s")

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"prompt": "Q", "response_a": "yes"}) + "\n")
    bad = run("label", broken, "--store", tmp_path / "s")
    assert bad.exit_code == 1 and "broken.jsonl:1" in bad.flat and "response_b" in bad.flat

    missing = run("label", tmp_path / "nope.jsonl", "--store", tmp_path / "s")
    assert missing.exit_code == 1 and "no such file" in missing.flat


def test_select_disagreement_between_strict_and_loose_verifier(tmp_path, pairs_file):
    out = tmp_path / "chosen.jsonl"
    result = run("select", pairs_file, "--strategy", "disagreement", "--budget", 2, "--out", out,
                 "--annotator", "verifier")
    assert result.exit_code == 0, result.output
    chosen = read_pairs(out)
    # the two pairs whose verdict flips between strict and loose mode (1 bit of vote entropy each)
    assert {pair.metadata["key"] for pair in chosen} == {1593, 2216}
    assert result.flat.count("vote entropy 1.000 bits") == 2  # (the table may wrap the rest of the reason)
    assert "disagreement: 2 of 5 pairs" in result.flat
    again = tmp_path / "again.jsonl"
    run("select", pairs_file, "--strategy", "disagreement", "--budget", 2, "--out", again, "--annotator", "verifier")
    assert again.read_text() == out.read_text()


def test_select_random_with_a_budget_above_the_pair_count(tmp_path, pairs_file):
    out = tmp_path / "all.jsonl"
    result = run("select", pairs_file, "--strategy", "random", "--budget", 50, "--out", out, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert len(read_pairs(out)) == 5 and "all were written" in result.flat
    assert sorted(p.pair_id for p in read_pairs(out)) == sorted(p.pair_id for p in read_pairs(pairs_file))
    diverse = run("select", pairs_file, "--strategy", "random", "--budget", 50, "--out", out, "--diverse")
    assert diverse.exit_code == 0 and len(read_pairs(out)) == 5, diverse.output  # distinct prompts: all of them


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "uncertainty", "--budget", 2], "--strategy uncertainty needs --reward-model"),
    (["--strategy", "uncertainty", "--budget", 2, "--reward-model", "no/such/folder"], "--reward-model no/such/folder"),
    (["--strategy", "disagreement", "--budget", 2], "or --annotator verifier"),
    (["--strategy", "disagreement", "--budget", 2, "--annotator", "oracle"], "unknown annotator 'oracle'"),
    (["--strategy", "greedy", "--budget", 2], "unknown --strategy 'greedy'; choose one of: random, uncertainty"),
    (["--strategy", "random", "--budget", 0], "--budget must be at least 1"),
])
def test_select_errors_are_clear(tmp_path, pairs_file, args, message):
    out = tmp_path / "x.jsonl"
    result = run("select", pairs_file, "--out", out, *args)
    assert result.exit_code == 1, result.output
    assert message in result.flat, result.output
    assert not out.exists()


def test_help_documents_the_two_verifier_modes():
    result = run("select", "--help")
    assert result.exit_code == 0
    assert "verifier:ifeval-strict" in result.flat and "verifier:ifeval-loose" in result.flat
