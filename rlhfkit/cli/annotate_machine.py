"""`rlhfkit annotate label` and `rlhfkit annotate select`: machine annotators and active selection.

`register(app)` adds both commands to the `rlhfkit annotate` Typer app.
"""

from __future__ import annotations

import inspect
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from annotation.base import Annotator
from annotation.registry import ANNOTATORS, DEFAULT_JUDGE_LM, make_annotator
from annotation.select import STRATEGIES, select_pairs
from annotation.verifier import MODES, VERIFIER_NAME, VerifierAnnotator, VerifierSetupError
from preference.errors import DataError
from preference.pairs import Pair, read_pairs, write_pairs
from preference.schema import Label, PreferenceRecord
from preference.store import PreferenceStore, StoreError
from rlhfkit.cli.console import console, err_console, fail, issue_table, row_progress, summary_table
from rlhfkit.core.errors import RlhfkitError

NEEDS_REWARD_MODEL = ("--strategy uncertainty needs --reward-model FOLDER (a model or ensemble saved by "
                      "`rlhfkit reward train`)")
PREVIEW_ROWS = 20


def _unknown_annotator(name: str) -> str:
    return f"unknown annotator {name!r}; available: {', '.join(ANNOTATORS)}"


def build_annotator(name: str, mode: str = "strict", judge_lm: str = DEFAULT_JUDGE_LM,
                    reward_model: str | None = None) -> Annotator:
    """The machine annotator called `name` on the command line (the messages name the command's options)."""
    if name not in ANNOTATORS:
        fail(_unknown_annotator(name))
    if name == "reward" and not reward_model:
        fail("--annotator reward needs --reward-model FOLDER (a model saved by `rlhfkit reward train`)")
    if name == "verifier" and mode not in MODES:
        fail(f"--mode must be 'strict' or 'loose', not {mode!r}")
    return make_annotator(name, mode=mode, judge_lm=judge_lm, reward_model=reward_model)


def build_annotators(names: list[str], judge_lm: str = DEFAULT_JUDGE_LM) -> list[Annotator]:
    """Annotators for `select --strategy disagreement`: each distinct name once; `verifier` becomes two annotators,
    the IFEval verifier in strict and in loose mode (verifier:ifeval-strict, verifier:ifeval-loose)."""
    out: list[Annotator] = []
    for name in dict.fromkeys(names):
        if name not in ANNOTATORS:
            fail(_unknown_annotator(name))
        if name == "judge":
            out.append(build_annotator("judge", judge_lm=judge_lm))
            continue
        try:
            out += [VerifierAnnotator(mode=mode, name=f"{VERIFIER_NAME}-{mode}", source=VERIFIER_NAME)
                    for mode in ("strict", "loose")]
        except VerifierSetupError as exc:
            fail(str(exc))
    return out


def _read_pairs(path: Path) -> list[Pair]:
    try:
        pairs = read_pairs(path)
    except DataError as exc:
        err_console.print(issue_table(exc.issues, "errors", limit=50))
        fail(str(exc).splitlines()[0])
    except (RlhfkitError, FileNotFoundError) as exc:
        fail(str(exc))
    if not pairs:
        fail(f"{path}: no pairs")
    return pairs


def run_annotator(annotator: Annotator, pairs: list[Pair], description: str) -> list[PreferenceRecord | None]:
    """Run an annotator over the pairs with a progress display (per pair when the annotator reports progress)."""
    with row_progress(description, total=len(pairs)) as advance:
        if "on_pair" in inspect.signature(annotator.annotate).parameters:
            results = annotator.annotate(pairs, on_pair=advance)  # type: ignore[call-arg]
        else:
            results = annotator.annotate(pairs)
            for _ in pairs:
                advance()
    if len(results) != len(pairs):
        fail(f"annotator {annotator.name!r} returned {len(results)} results for {len(pairs)} pairs")
    return results


def label(
    pairs_file: Annotated[Path, typer.Argument(help="Pairs to judge (.jsonl, .parquet or .csv with prompt, "
                                               "response_a, response_b and optional metadata).")],
    store: Annotated[Path, typer.Option("--store", "-s", help="Preference store folder that receives the judgments "
                                        "(created if missing).")],
    annotator: Annotated[str, typer.Option("--annotator", "-a", help="Machine annotator: 'verifier' (IFEval "
                                           "instructions in each pair's metadata), 'judge' (an LLM judge, see "
                                           "--judge-lm) or 'reward' (a trained reward model, see --reward-model)."
                                           )] = "verifier",
    mode: Annotated[str, typer.Option(help="Verifier mode: 'strict' (the response as written) or 'loose' (also "
                                      "without a first/last line or markdown asterisks).")] = "strict",
    judge_lm: Annotated[str, typer.Option(help="The judge's LM: a bundled name, local:PATH_OR_HF_ID, or a LiteLLM "
                                          "model string such as openai/gpt-4o-mini (needs its API key).")
                        ] = DEFAULT_JUDGE_LM,
    reward_model: Annotated[str | None, typer.Option(help="Folder of a reward model (or ensemble) for --annotator "
                                                     "reward.")] = None,
) -> None:
    """Judge every pair in PAIRS_FILE with a machine annotator and append the judgments to a preference store."""
    judge = build_annotator(annotator, mode, judge_lm, reward_model)
    pairs = _read_pairs(pairs_file)
    results = run_annotator(judge, pairs, f"{judge.name} on {pairs_file.name}")
    records = [record for record in results if record is not None]
    skipped: Counter[str] = Counter(getattr(judge, "last_skipped", None) or {})
    unexplained = len(pairs) - len(records) - sum(skipped.values())
    if unexplained > 0:
        skipped["not judged"] += unexplained
    written = 0
    if records:
        try:
            written = PreferenceStore(store).append(records, note=f"{judge.name} ({mode}) on {pairs_file.name}")
        except (StoreError, OSError) as exc:
            fail(str(exc))

    labels = Counter(record.label for record in records)
    console.print(summary_table(f"{judge.name} ({mode}) on {pairs_file.name}", {
        "pairs read": len(pairs), "judged": len(records), "skipped": len(pairs) - len(records),
        **{f"  skipped: {reason}": count for reason, count in sorted(skipped.items())},
        **{f"label {value.value}": labels.get(value, 0) for value in Label},
        "judgments written": written}, "count"))
    if not records:
        fail(f"no pair in {pairs_file} could be judged by {judge.name} (reasons above); nothing written")
    console.print(f"appended {written} judgment(s) to {store}")


def select(
    pairs_file: Annotated[Path, typer.Argument(help="Candidate pairs (.jsonl, .parquet or .csv).")],
    strategy: Annotated[str, typer.Option(help=f"Selection strategy: {', '.join(STRATEGIES)}. 'uncertainty' needs "
                                          "--reward-model.")],
    budget: Annotated[int, typer.Option(help="How many pairs to choose (all of them if the file has fewer).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the chosen pairs go (JSONL), most informative "
                                      "first.")],
    annotator: Annotated[list[str] | None, typer.Option(
        "--annotator", "-a", help="Machine annotators whose labels 'disagreement' compares. 'verifier' counts as two "
        "annotators: the IFEval verifier in strict mode (verifier:ifeval-strict) and in loose mode "
        "(verifier:ifeval-loose), so pairs whose verdict hinges on formatting slack rank first; 'judge' adds the LLM "
        "judge (--judge-lm). Repeatable.")] = None,
    judge_lm: Annotated[str, typer.Option(help="The judge's LM when --annotator judge is given (see `label`).")
                        ] = DEFAULT_JUDGE_LM,
    reward_model: Annotated[list[str] | None, typer.Option(
        "--reward-model", help="Reward model folder(s) for 'uncertainty' (margin near zero) or 'disagreement' "
        "(spread across models; an ensemble folder counts as its members). Repeatable.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random sample and of tie-breaking.")] = 0,
    diverse: Annotated[bool, typer.Option(help="No two chosen pairs with near-duplicate prompts while distinct ones "
                                          "are left.")] = False,
) -> None:
    """Choose the BUDGET most informative pairs of PAIRS_FILE for people to label, and write them to --out."""
    if strategy not in STRATEGIES:
        fail(f"unknown --strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if budget <= 0:
        fail(f"--budget must be at least 1, not {budget}")
    if strategy == "uncertainty" and not reward_model:
        fail(NEEDS_REWARD_MODEL)
    scorers = _reward_scorers(reward_model or []) if strategy != "random" else []
    annotators = build_annotators(annotator or [], judge_lm) if not scorers else []
    if strategy == "disagreement" and len(annotators) < 2 and len(scorers) < 2:
        fail("--strategy disagreement needs two or more models or annotators to compare: --reward-model an ensemble "
             "(or several models), or --annotator verifier (it judges in strict and loose mode)")
    if strategy == "random" and annotators:
        err_console.print("[yellow]note:[/] --annotator is not used by --strategy random")
        annotators = []
    pairs = _read_pairs(pairs_file)
    try:
        if scorers:
            with row_progress(f"scoring {len(pairs)} pairs with {len(scorers)} reward model(s)", total=None):
                chosen = select_pairs(pairs, strategy, budget, seed=seed, scorers=scorers, diverse=diverse)
        elif annotators:
            with row_progress(f"judging {len(pairs)} pairs with {len(annotators)} annotators", total=None):
                chosen = select_pairs(pairs, strategy, budget, seed=seed, annotators=annotators,
                                      diverse=diverse)
        else:
            chosen = select_pairs(pairs, strategy, budget, seed=seed, diverse=diverse)
    except RlhfkitError as exc:
        fail(str(exc))
    try:
        write_pairs([selection.pair for selection in chosen], out)
    except OSError as exc:
        fail(f"{out}: {exc}")

    table = Table(title=f"{strategy}: {len(chosen)} of {len(pairs)} pairs -> {out}")
    for column in ("rank", "pair", "score", "reason", "prompt"):
        table.add_column(column, overflow="fold")
    for rank, selection in enumerate(chosen[:PREVIEW_ROWS], start=1):
        prompt = selection.pair.prompt if isinstance(selection.pair.prompt, str) else (
            selection.pair.prompt[-1]["content"])
        table.add_row(str(rank), selection.pair.pair_id[:10], f"{selection.score:.3f}", escape(selection.reason),
                      escape(prompt[:60] + ("…" if len(prompt) > 60 else "")))
    console.print(table)
    if len(chosen) > PREVIEW_ROWS:
        console.print(f"... and {len(chosen) - PREVIEW_ROWS} more in {out}")
    if budget > len(pairs):
        console.print(f"[yellow]note:[/] --budget {budget} is more than the {len(pairs)} pairs; all were written")


def _reward_scorers(paths: list[str]) -> list[Any]:
    """One scorer per reward model; an ensemble folder contributes each member (their spread is the signal)."""
    from reward.model import member_scorers

    scorers: list[Any] = []
    for path in paths:
        try:
            scorers += member_scorers(path)
        except (RlhfkitError, OSError) as exc:
            fail(f"--reward-model {path}: {exc}")
    return scorers


def register(app: typer.Typer) -> None:
    """Add `label` and `select` to the `rlhfkit annotate` app."""
    app.command("label")(label)
    app.command("select")(select)
