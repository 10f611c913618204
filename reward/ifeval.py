"""IFEval's verifiable instructions as a programmatic reward: does a response follow the instructions in its prompt?

`verify_response` checks one response against IFEval's `instruction_id_list` + `kwargs` (one kwargs object per
instruction) with if-verifiable's IFEval checkers and returns the share of instructions followed, with each
instruction's strict and loose outcome. The verifier annotator (`annotation.verifier`), policy evaluation
(`policy.evaluate`) and RL reward functions (`policy.rewards`) all use it, so they judge alike.

`mode="strict"` checks the response as written; `mode="loose"` (IFEval's loose accuracy) also accepts it when one
of a few harmless variants passes: without the first or last line (a preamble such as "Sure, here it is:"), or
without markdown asterisks.

Offline: sentence counting uses NLTK's punkt model, which comes from an installed package (the `llama-index-core`
wheel ships NLTK's official `punkt_tab` data; it is located on disk, never imported). Nothing is downloaded.

Deterministic: every parameter of every checker must be given in `kwargs` (IFEval's checkers would otherwise draw
missing ones at random), and language detection (`langdetect`) runs with a fixed seed.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.metadata
import inspect
import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from preference.errors import DataError, Issue
from preference.pairs import Pair
from preference.schema import Prompt
from rlhfkit.core.errors import InputError, SetupError

Mode = Literal["strict", "loose"]
MODES: tuple[str, ...] = ("strict", "loose")

PUNKT_PACKAGE = "llama-index-core"
PUNKT_INSTALL = "pip install --no-deps llama-index-core"
# Where the llama-index-core wheel keeps NLTK's data (relative to site-packages).
PUNKT_RELATIVE = Path("llama_index") / "core" / "_static" / "nltk_cache"


class VerifierSetupError(SetupError):
    """The verifier cannot run here (a missing package or data file); the message says how to fix it."""


class VerificationError(InputError):
    """The instructions of one prompt cannot be checked (unknown instruction id, missing or bad kwargs)."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason  # a short, countable reason ("unknown instruction id 'x:y'")


class UnknownInstructionError(VerificationError):
    """An instruction id that IFEval's registry does not know (if-verifiable alone would skip it silently)."""

    def __init__(self, ids: Sequence[str]):
        self.ids = list(ids)
        names = ", ".join(repr(i) for i in self.ids)
        super().__init__(f"unknown IFEval instruction id(s): {names}; known ids: {', '.join(instruction_ids())}",
                         reason=f"unknown instruction id {names}")


# -- set-up: NLTK data and the checker registry ---------------------------------------------------------------------
def punkt_data_dir() -> Path | None:
    """The NLTK data folder shipped inside the installed llama-index-core wheel, found on disk without importing it."""
    candidates: list[Path] = []
    try:
        candidates.append(Path(str(importlib.metadata.distribution(PUNKT_PACKAGE).locate_file(PUNKT_RELATIVE))))
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates += [Path(entry) / PUNKT_RELATIVE for entry in sys.path if entry]
    for candidate in candidates:
        if (candidate / "tokenizers" / "punkt_tab" / "english").is_dir():
            return candidate
    return None


@functools.cache
def ensure_punkt() -> Path:
    """Put the packaged punkt data first on NLTK's search path (once); returns the folder.

    Raises `VerifierSetupError` naming the install command when the package (and so the data) is missing.
    """
    import nltk

    folder = punkt_data_dir()
    if folder is None:
        raise VerifierSetupError(
            f"the IFEval verifier needs NLTK's punkt sentence model, which rlhfkit takes from the {PUNKT_PACKAGE} "
            f"wheel (never imported, nothing is downloaded); install it with `{PUNKT_INSTALL}` (`make test` and "
            "`make run` do this)")
    if str(folder) not in nltk.data.path:
        nltk.data.path.insert(0, str(folder))
    return folder


@functools.cache
def _registry() -> dict[str, Any]:
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return dict(INSTRUCTION_DICT)


def instruction_ids() -> list[str]:
    """The IFEval instruction ids that can be verified (25)."""
    return sorted(_registry())


@functools.cache
def _seed_langdetect() -> None:
    # `langdetect` samples at random; without a seed the same text can get different languages on two runs.
    from langdetect import DetectorFactory

    if DetectorFactory.seed is None:
        DetectorFactory.seed = 0


@functools.cache
def _parameters(instruction_id: str) -> tuple[str, ...]:
    signature = inspect.signature(_registry()[instruction_id].build_description)
    return tuple(name for name, p in signature.parameters.items()
                 if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


# -- checking one response ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InstructionCheck:
    """One instruction's outcome for one response."""

    instruction_id: str
    strict: bool
    loose: bool

    def passed(self, mode: Mode = "strict") -> bool:
        return self.strict if mode == "strict" else self.loose

    def to_dict(self) -> dict[str, Any]:
        return {"instruction_id": self.instruction_id, "strict": self.strict, "loose": self.loose}


def prompt_text(prompt: Prompt) -> str:
    """The text the instructions were given in: the prompt itself, or the last user message of a chat prompt."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt):
        if message.get("role") == "user":
            return message.get("content", "")
    raise VerificationError("the chat prompt has no user message to take the instructions from",
                            reason="chat prompt without a user message")


def check_instructions(instruction_id_list: Any, kwargs: Any) -> list[dict[str, Any]]:
    """Validate an instruction list and its kwargs; returns the kwargs (None values dropped), one dict per id.

    Raises `UnknownInstructionError` or `VerificationError` with a message naming the instruction and field.
    """
    if not isinstance(instruction_id_list, list) or not all(isinstance(i, str) for i in instruction_id_list):
        raise VerificationError("instruction_id_list must be a list of instruction id strings",
                                reason="instruction_id_list is not a list of strings")
    if not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
        raise VerificationError("kwargs must be a list of objects, one per instruction",
                                reason="kwargs is not a list of objects")
    if len(kwargs) != len(instruction_id_list):
        raise VerificationError(f"kwargs has {len(kwargs)} entries for {len(instruction_id_list)} instruction(s)",
                                reason="kwargs and instruction_id_list differ in length")
    unknown = [i for i in dict.fromkeys(instruction_id_list) if i not in _registry()]
    if unknown:
        raise UnknownInstructionError(unknown)
    cleaned = []
    for instruction_id, given in zip(instruction_id_list, kwargs, strict=True):
        given = {key: value for key, value in given.items() if value is not None}
        expected = _parameters(instruction_id)
        missing = [name for name in expected if name not in given]
        extra = [name for name in given if name not in expected]
        if missing or extra:
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"unexpected {', '.join(extra)}"] if extra else [])
            raise VerificationError(
                f"kwargs of {instruction_id!r}: {'; '.join(parts)} (expects: {', '.join(expected) or 'nothing'})",
                reason=f"bad kwargs for {instruction_id}")
        cleaned.append(given)
    return cleaned


def verify_response(response: str, instruction_id_list: Sequence[str], kwargs: Sequence[dict[str, Any]],
                    prompt: Prompt = "", mode: Mode = "strict") -> tuple[float, list[InstructionCheck]]:
    """Check one response against IFEval instructions; returns (share of instructions passed in `mode`, results).

    `results` holds one `InstructionCheck` per instruction, in order, with both the strict and the loose outcome.
    An empty response fails every instruction. Raises `VerificationError` (`UnknownInstructionError` for ids IFEval
    does not know) and `VerifierSetupError` (packaged NLTK data missing).
    """
    if mode not in MODES:
        raise InputError(f"mode must be 'strict' or 'loose', not {mode!r}")
    if not isinstance(response, str):
        raise VerificationError(f"response must be a string, not {type(response).__name__}",
                                reason="response is not a string")
    ids = list(instruction_id_list)
    if not ids:
        raise VerificationError("no instructions to verify", reason="no verifiable instructions")
    cleaned = check_instructions(ids, list(kwargs))
    ensure_punkt()
    _seed_langdetect()
    from if_verifiable.common import evaluate_instructions

    text = prompt_text(prompt)
    state = random.getstate()
    # IFEval's checkers draw invalid parameters at random (two IFEval prompts give "#" and "!" as the letter to
    # count, which the letter checker swaps for a random letter): a fixed seed keeps every run's verdict the same.
    random.seed(0)
    try:
        raw, _ = evaluate_instructions(response, ids, cleaned, text, _registry())
    except (TypeError, ValueError, KeyError) as exc:  # a kwargs value of the wrong type, e.g. num_words="many"
        raise VerificationError(f"cannot check the instructions: {exc}", reason="bad instruction kwargs") from exc
    finally:
        random.setstate(state)
    if not raw:  # if-verifiable returns no results for an empty response: it follows no instruction
        results = [InstructionCheck(i, False, False) for i in ids]
    else:
        results = [InstructionCheck(r.instruction_id, bool(r.strict_pass), bool(r.loose_pass)) for r in raw]
    score = sum(check.passed(mode) for check in results) / len(results)
    return score, results


def feedback(results: Sequence[InstructionCheck], mode: Mode = "strict") -> str:
    """One line a person or an optimizer (DSPy GEPA) can read: which instructions passed and which failed."""
    passed = [c.instruction_id for c in results if c.passed(mode)]
    failed = [c.instruction_id for c in results if not c.passed(mode)]
    return (f"{len(passed)}/{len(results)} instructions followed ({mode}); "
            f"passed: {', '.join(passed) or 'none'}; failed: {', '.join(failed) or 'none'}")


# -- IFEval prompt files --------------------------------------------------------------------------------------------
def load_ifeval_prompts(path: str | Path, *, check_ids: bool = True) -> list[dict[str, Any]]:
    """Read an IFEval-format JSONL file (optionally .gz): one object per line with `key`, `prompt`,
    `instruction_id_list` and `kwargs`. Raises `DataError` listing every bad row (file, line, field)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    seen_keys: dict[Any, int] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = (str(path), line_no)
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                issues.append(Issue(*where, None, f"not valid JSON ({exc.msg} at column {exc.colno})"))
                continue
            if not isinstance(row, dict):
                issues.append(Issue(*where, None, f"must be a JSON object, not {type(row).__name__}"))
                continue
            row_issues = []
            key = row.get("key")
            if key is None:
                row_issues.append(Issue(*where, "key", "is missing"))
            elif not isinstance(key, int | str) or isinstance(key, bool):
                row_issues.append(Issue(*where, "key", f"must be an integer or a string, not {type(key).__name__}"))
            elif key in seen_keys:
                row_issues.append(Issue(*where, "key", f"{key!r} already used on line {seen_keys[key]}"))
            else:
                seen_keys[key] = line_no
            prompt = row.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                row_issues.append(Issue(*where, "prompt", "is missing" if prompt is None else
                                        "must be a non-empty string"))
            ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
            if ids is None:
                row_issues.append(Issue(*where, "instruction_id_list", "is missing"))
            elif not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                row_issues.append(Issue(*where, "instruction_id_list", "must be a non-empty list of strings"))
            if kwargs is None:
                row_issues.append(Issue(*where, "kwargs", "is missing"))
            elif not isinstance(kwargs, list) or not all(isinstance(k, dict) for k in kwargs):
                row_issues.append(Issue(*where, "kwargs", "must be a list of objects, one per instruction"))
            if not row_issues and len(kwargs) != len(ids):
                row_issues.append(Issue(*where, "kwargs", f"has {len(kwargs)} entries for {len(ids)} instruction(s)"))
            if not row_issues and check_ids:
                try:
                    check_instructions(ids, kwargs)
                except VerificationError as exc:
                    field = "instruction_id_list" if isinstance(exc, UnknownInstructionError) else "kwargs"
                    row_issues.append(Issue(*where, field, str(exc)))
            if row_issues:
                issues += row_issues
            else:
                rows.append(row)
    if issues:
        raise DataError(issues, f"{path}: {len(issues)} problem(s) in the IFEval prompts file")
    return rows


def ifeval_pair(prompt: dict[str, Any], response_a: str, response_b: str) -> Pair:
    """A pair for the verifier from one `load_ifeval_prompts` row: the instructions travel in the metadata."""
    metadata = {"key": prompt["key"], "instruction_id_list": list(prompt["instruction_id_list"]),
                "kwargs": [dict(k) for k in prompt["kwargs"]]}
    return Pair(prompt["prompt"], response_a, response_b, metadata)
