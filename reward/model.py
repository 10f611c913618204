"""Load, save and run reward models: `RewardModel` (one network) and `RewardEnsemble` (several, for uncertainty).

A reward model is a Hugging Face sequence classifier with one output (`num_labels=1`): the scalar reward of a
(prompt, response). Text becomes token ids through `reward.text.encode` only, the same function training uses, with
the `max_length` saved in `rlhfkit_reward.json` (`reward.meta.RewardMeta`), so scoring sees exactly what training saw.

Inputs are `input_ids` and `attention_mask` only, as TRL's reward collator builds them: `encode` returns ids without
`token_type_ids`, so a BERT model sees segment 0 throughout, in training and here alike.

Scoring is length-sorted and dynamically padded: pairs are ordered by token count so each batch pads to a length
close to its own members', and results go back in the caller's order. Padding is on the right; decoder classifiers
(Llama, ...) read the last token that is not `pad_token_id`, encoders the [CLS] token or the mean over real tokens
(`reward.pooling`), so padding never changes a score beyond float rounding.

Loading refuses, with a `RewardModelError`, anything that would silently give random rewards: a model that is not a
sequence classifier or whose head weights are missing from the checkpoint (transformers would initialise them at
random and only log a warning), a head with more than one output, a tokenizer that cannot pad.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from preference.schema import Prompt
from reward.meta import FILE as META_FILE
from reward.meta import RewardMeta
from reward.pooling import apply_pooling, saved_pooling
from reward.text import encode
from rlhfkit.core.atomic import atomic_dir
from rlhfkit.core.errors import InputError
from rlhfkit.core.stats import sigmoid
from rlhfkit.models.registry import ModelNotFoundError, resolve_model

log = logging.getLogger(__name__)

UNREADABLE_SHARE = 0.1
"""Above this share of unknown tokens in the texts it scores, a reward model warns that it cannot read them."""

# Batching: pairs are sorted by length and cut into batches of at most `batch_size` pairs and `max_batch_tokens`
# padded tokens. On CPU the token budget matters more than the count: a single 150-token pair already keeps BERT's
# matrix products efficient, and batches much over ~2k tokens run slower per token (activations fall out of the
# cache, padding grows), while short pairs still gain from being many to a batch (benchmarks/reward_scoring.py).
# On a GPU, larger batches pay off and memory, not cache, is the limit.
CPU_BATCH_SIZE = 128
CPU_MAX_BATCH_TOKENS = 2048
GPU_BATCH_SIZE = 128
GPU_MAX_BATCH_TOKENS = 128 * 512
# Without rlhfkit_reward.json the token limit is the tokenizer's, capped here (some tokenizers say 10**30).
DEFAULT_MAX_LENGTH_CAP = 512
ADAPTER_CONFIG = "adapter_config.json"
MEMBER_PATTERN = re.compile(r"^member-(\d+)$")


class RewardModelError(InputError):
    """A reward model that cannot be loaded or used, with what is wrong and how to fix it."""


# ---------------------------------------------------------------- loading helpers


def _resolve(path: str | Path) -> tuple[str, Path | None]:
    """(what from_pretrained gets, the local folder or None for a hub id left to the local cache)."""
    try:
        resolved = resolve_model(str(path))
    except ModelNotFoundError as error:
        raise RewardModelError(f"no reward model at {str(path)!r}: {error}") from None
    return resolved, Path(resolved) if Path(resolved).is_dir() else None


def _checkpoint_keys(source: str, folder: Path | None) -> set[str] | None:
    """Tensor names in the checkpoint's safetensors files, or None when it has none we can read (e.g. .bin only)."""
    from safetensors import safe_open

    files: list[Path] = []
    if folder is not None:
        files = sorted(folder.glob("*.safetensors"))
    else:
        from transformers.utils import cached_file

        for name in ("model.safetensors.index.json", "model.safetensors"):
            found = cached_file(source, name, _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False)
            if found is None:
                continue
            found = Path(found)
            if name.endswith(".json"):
                shards = set(json.loads(found.read_text())["weight_map"].values())
                files = [Path(p) for p in (cached_file(source, shard) for shard in sorted(shards)) if p]
            else:
                files = [found]
            break
    if not files:
        return None
    keys: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            keys.update(handle.keys())
    return keys


def _head_names(config: Any) -> list[str]:
    """Names of the head's parameters (those outside the base model) of the config's sequence classifier.

    Built on the meta device: no memory, no initialisation cost.
    """
    from transformers import AutoModelForSequenceClassification

    try:
        with torch.device("meta"):
            skeleton = AutoModelForSequenceClassification.from_config(config)
    except ValueError as error:
        raise RewardModelError(
            f"model type {config.model_type!r} has no sequence-classifier variant in transformers, so it cannot be "
            f"a reward model ({error})"
        ) from None
    prefix = skeleton.base_model_prefix + "."
    return [name for name, _ in skeleton.named_parameters() if not name.startswith(prefix)]


def _not_a_classifier(where: str, config: Any, missing: Sequence[str]) -> RewardModelError:
    architectures = list(getattr(config, "architectures", None) or [])
    kind = ", ".join(architectures) if architectures else f"model_type {config.model_type!r}"
    what = ("is not a sequence classifier" if not any(a.endswith("ForSequenceClassification") for a in architectures)
            else "is a sequence classifier without its head weights")
    return RewardModelError(
        f"{where} {what} ({kind}): its checkpoint has no weights for the classification head "
        f"({', '.join(missing)}), which would be initialised at random and give meaningless rewards. "
        "Give a trained reward model (`rlhfkit reward train` saves one), not a base or causal-LM model."
    )


def _check_config(where: str, config: Any) -> None:
    if config.num_labels != 1:
        raise RewardModelError(
            f"{where} has a {config.num_labels}-output classification head; a reward model has exactly one "
            "(num_labels=1), a scalar reward"
        )


def _prepare_tokenizer(where: str, tokenizer: Any) -> Any:
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise RewardModelError(
                f"{where}: the tokenizer has neither a pad token nor an eos token, so batches cannot be padded; "
                "set tokenizer.pad_token and save the tokenizer again"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report, e.g. for a LoRA base whose head is about to come from the adapter."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------- RewardModel


class RewardModel:
    """One reward network: a sequence classifier with one output, its tokenizer and its `RewardMeta`.

    Implements `reward.protocols.RewardScorer`. Build one with `RewardModel.load(path)`, or directly from a model
    and tokenizer (e.g. right after training) with `RewardModel(model, tokenizer, meta)`.
    """

    def __init__(self, model: Any, tokenizer: Any, meta: RewardMeta, *, batch_size: int | None = None,
                 max_batch_tokens: int | None = None) -> None:
        where = f"reward model {meta.backbone!r}"
        _check_config(where, model.config)
        self.model = model.eval()
        self.tokenizer = _prepare_tokenizer(where, tokenizer)
        if self.model.config.pad_token_id is None:
            # Decoder classifiers find each sequence's last token by comparing with pad_token_id.
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.meta = meta
        self.batch_size = batch_size  # None: CPU_BATCH_SIZE or GPU_BATCH_SIZE, by the model's device
        self.max_batch_tokens = max_batch_tokens  # None: CPU_MAX_BATCH_TOKENS or GPU_MAX_BATCH_TOKENS

    # ------------------------------------------------------------ load / save

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
             batch_size: int | None = None, max_batch_tokens: int | None = None) -> RewardModel:
        """Load a folder saved by rlhfkit (full weights or a LoRA adapter), or any HF sequence-classification folder
        or hub id in the local cache (then max_length = the tokenizer's, at most 512, and temperature 1).

        `device`: default cuda when available, else cpu. `dtype`: default the checkpoint's (float32 for rlhfkit's).
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        source, folder = _resolve(path)
        where = str(path)
        meta = RewardMeta.load(folder) if folder is not None else None
        if folder is not None and (folder / ADAPTER_CONFIG).is_file():
            model, tokenizer, meta = _load_adapter(where, folder, meta, dtype)
        else:
            try:
                config = AutoConfig.from_pretrained(source)
            except (OSError, ValueError) as error:
                hint = "" if folder is not None else " (no such folder, nor a model in the local Hugging Face cache)"
                raise RewardModelError(f"{where}: cannot read a model config{hint}: {error}") from None
            keys = _checkpoint_keys(source, folder)
            if keys is not None:
                missing = [name for name in _head_names(config) if name not in keys]
                if missing:
                    raise _not_a_classifier(where, config, missing)
            else:
                _head_names(config)  # still refuse model types with no sequence classifier, before loading
            _check_config(where, config)
            kwargs: dict[str, Any] = {"output_loading_info": True}
            if dtype is not None:
                kwargs["dtype"] = dtype
            pooling = saved_pooling(config, meta.pooling if meta is not None else None)
            with _quiet_transformers() if pooling == "mean" else contextlib.nullcontext():
                # Mean-pooled models are saved without BERT's unused pooler weights: no "newly initialised" report.
                model, info = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
            apply_pooling(model, pooling)
            head = set(_head_names(model.config))
            missing = sorted(head & set(info.get("missing_keys", ())))
            if missing:  # checkpoints we could not read above (.bin files)
                raise _not_a_classifier(where, model.config, missing)
            tokenizer = AutoTokenizer.from_pretrained(source)
        if meta is None:
            limit = getattr(tokenizer, "model_max_length", None) or DEFAULT_MAX_LENGTH_CAP
            meta = RewardMeta(backbone=str(path), max_length=min(int(limit), DEFAULT_MAX_LENGTH_CAP))
        model.to(torch.device(device) if device is not None else _default_device())
        return cls(model, tokenizer, meta, batch_size=batch_size, max_batch_tokens=max_batch_tokens)

    def save(self, path: str | Path) -> Path:
        """Write weights (safetensors), tokenizer and rlhfkit_reward.json into `path`, atomically.

        A PEFT model (e.g. fresh from LoRA training) is saved as its adapter, meta.lora true, meta.backbone naming the
        base; anything else as full weights, meta.lora false (a model loaded from an adapter was merged on load).
        """
        path = Path(path)
        meta = dataclasses.replace(self.meta, lora=hasattr(self.model, "peft_config"))
        with atomic_dir(path) as tmp:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            meta.save(tmp)
        return path

    # ------------------------------------------------------------ scoring

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def default_batch_size(self) -> int:
        if self.batch_size:
            return self.batch_size
        return GPU_BATCH_SIZE if self.device.type == "cuda" else CPU_BATCH_SIZE

    def default_max_batch_tokens(self) -> int:
        if self.max_batch_tokens:
            return self.max_batch_tokens
        return GPU_MAX_BATCH_TOKENS if self.device.type == "cuda" else CPU_MAX_BATCH_TOKENS

    def batches(self, lengths: Sequence[int], batch_size: int | None = None) -> list[list[int]]:
        """How `score_ids` groups sequences of these lengths: lists of indices, longest first, each batch at most
        `batch_size` sequences and (unless a single sequence is longer) `max_batch_tokens` padded tokens."""
        size = batch_size or self.default_batch_size()
        if size < 1:
            raise InputError(f"batch_size must be at least 1, not {size}")
        budget = self.default_max_batch_tokens()
        # Longest first: the largest batch runs first, so running out of memory happens at once, not at the end.
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        groups: list[list[int]] = []
        for index in order:
            if groups and len(groups[-1]) < size and lengths[groups[-1][0]] * (len(groups[-1]) + 1) <= budget:
                groups[-1].append(index)
            else:
                groups.append([index])
        return groups

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[list[int]]:
        """Token ids of each pair, exactly as training built them (`reward.text.encode`)."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        encoded = [encode(self.tokenizer, p, r, self.meta.max_length).input_ids for p, r in zip(prompts, responses)]
        self._check_readable(encoded)
        return encoded

    def _check_readable(self, encoded: Sequence[Sequence[int]]) -> None:
        """Warn (once per model) when its tokenizer maps much of the text to its unknown token: text in a script or
        language it was not built for (a pool written for another model's tokenizer, emoji for a BERT vocabulary).
        Such text still scores, but the scores carry little of what the text says."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is None or getattr(self, "_warned_unreadable", False):
            return
        total = sum(len(ids) for ids in encoded)
        unknown = sum(list(ids).count(unk) for ids in encoded)
        if total and unknown / total > UNREADABLE_SHARE:
            self._warned_unreadable = True
            log.warning("reward model %r reads %.0f%% of the tokens of this text as unknown (%s): its tokenizer does "
                        "not cover this language or script, so its scores say little here; use a reward model whose "
                        "tokenizer does", self.meta.backbone, 100 * unknown / total, self.tokenizer.unk_token)

    def forward_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        """Rewards of already-encoded sequences in one forward pass (right-padded to the longest)."""
        longest = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
        device = self.device
        logits = self.model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
        return logits[:, 0].float().cpu().tolist()

    def score_ids(self, sequences: Sequence[Sequence[int]], *, batch_size: int | None = None,
                  progress: bool = False) -> list[float]:
        """Rewards of encoded sequences: length-sorted batches (`batches`), results in the given order."""
        if not sequences:
            return []
        groups = self.batches([len(ids) for ids in sequences], batch_size)
        scores: list[float] = [0.0] * len(sequences)
        with _progress_bar(progress, len(sequences)) as advance:
            self.model.eval()
            with torch.inference_mode():
                for group in groups:
                    for index, value in zip(group, self.forward_ids([sequences[i] for i in group])):
                        scores[index] = value
                    advance(len(group))
        return scores

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], *, batch_size: int | None = None,
              progress: bool = False) -> list[float]:
        """One reward per (prompt, response), in input order. `progress`: a Rich bar on stderr when it is a terminal."""
        return self.score_ids(self.encode(prompts, responses), batch_size=batch_size, progress=progress)

    def score_stream(self, items: Iterable[tuple[Prompt, str]], *, batch_size: int | None = None,
                     window: int = 4096) -> Iterator[float]:
        """Rewards of a stream of (prompt, response), in input order, holding at most `window` pairs at a time."""
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        iterator = iter(items)
        while chunk := list(islice(iterator, window)):
            prompts = [prompt for prompt, _ in chunk]
            responses = [response for _, response in chunk]
            yield from self.score(prompts, responses, batch_size=batch_size)

    def score_pairs(self, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str]
                    ) -> tuple[list[float], list[float], list[float]]:
        """(r_a, r_b, P(a preferred over b)) per pair, from one pass over both sides; P = sigmoid((r_a - r_b) / T)."""
        a, b = _score_both(self, prompts, responses_a, responses_b)
        return a, b, _compare((x - y) / self.meta.temperature for x, y in zip(a, b))

    def compare(self, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str]
                ) -> list[float]:
        """P(a preferred over b) = sigmoid((r_a - r_b) / temperature), one per prompt."""
        return self.score_pairs(prompts, responses_a, responses_b)[2]

    def __repr__(self) -> str:
        return (f"RewardModel({self.meta.backbone!r}, {type(self.model).__name__}, max_length={self.meta.max_length}, "
                f"temperature={self.meta.temperature})")


def _score_both(scorer: Any, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str]
                ) -> tuple[list[float], list[float]]:
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError(f"{len(prompts)} prompts, {len(responses_a)} responses a, {len(responses_b)} responses b")
    # One call for both sides: a and b share length-sorted batches.
    scores = scorer.score(list(prompts) * 2, list(responses_a) + list(responses_b))
    return scores[: len(prompts)], scores[len(prompts) :]


def _compare(margins: Iterable[float]) -> list[float]:
    return [sigmoid(m) for m in margins]


def _load_adapter(where: str, folder: Path, meta: RewardMeta | None, dtype: torch.dtype | None
                  ) -> tuple[Any, Any, RewardMeta]:
    """A PEFT adapter folder: base from meta.backbone, adapter applied, then merged for fast inference."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    adapter = json.loads((folder / ADAPTER_CONFIG).read_text())
    backbone = meta.backbone if meta is not None else adapter.get("base_model_name_or_path")
    if not backbone:
        raise RewardModelError(f"{where} is a LoRA adapter but names no base model ({META_FILE} is missing)")
    try:
        base_source = resolve_model(backbone)
    except ModelNotFoundError as error:
        raise RewardModelError(f"{where}: the adapter's base model {backbone!r} cannot be found: {error}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError):
        tokenizer = AutoTokenizer.from_pretrained(base_source)
    _prepare_tokenizer(where, tokenizer)
    kwargs: dict[str, Any] = {"num_labels": 1, "pad_token_id": tokenizer.pad_token_id}
    if dtype is not None:
        kwargs["dtype"] = dtype
    with _quiet_transformers():  # the base's head is random until the adapter's copy replaces it
        base = AutoModelForSequenceClassification.from_pretrained(base_source, **kwargs)
    head = _head_names(base.config)
    keys = _checkpoint_keys(str(folder), folder) or set()
    missing = [name for name in head if f"base_model.model.{name}" not in keys]
    if keys and missing:
        raise RewardModelError(
            f"{where}: the LoRA adapter does not carry the classification head ({', '.join(missing)}); "
            "train with modules_to_save set to the head so the trained head is saved with the adapter"
        )
    model = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    apply_pooling(model, saved_pooling(model.config, meta.pooling if meta is not None else None))
    if meta is None:
        limit = getattr(tokenizer, "model_max_length", None) or DEFAULT_MAX_LENGTH_CAP
        meta = RewardMeta(backbone=backbone, max_length=min(int(limit), DEFAULT_MAX_LENGTH_CAP), lora=True)
    return model, tokenizer, meta


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Any]:
    if not (enabled and sys.stderr.isatty()):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scoring", total=total)
        yield lambda n: bar.advance(task, n)


# ---------------------------------------------------------------- RewardEnsemble


class RewardEnsemble:
    """Several independently trained reward models; `score` is their mean, `score_members` their spread.

    Members share nothing but the API (each has its own tokenizer and max_length), so each encodes for itself.
    """

    def __init__(self, members: Sequence[RewardModel]) -> None:
        if not members:
            raise RewardModelError("an ensemble needs at least one member")
        self.members = list(members)

    @classmethod
    def load(cls, paths: str | Path | Sequence[str | Path], *, device: str | torch.device | None = None,
             dtype: torch.dtype | None = None) -> RewardEnsemble:
        """From a list of model folders, or one folder holding `member-0/`, `member-1/`, ..."""
        if isinstance(paths, (str, Path)):
            folders = member_folders(paths)
            if not folders:
                raise RewardModelError(f"{paths}: no member-*/ folders, so not an ensemble")
            paths = folders
        return cls([RewardModel.load(p, device=device, dtype=dtype) for p in paths])

    def __len__(self) -> int:
        return len(self.members)

    def score_members(self, prompts: Sequence[Prompt], responses: Sequence[str], *, batch_size: int | None = None
                      ) -> list[list[float]]:
        """Each member's rewards: result[m][i] is member m's reward of pair i."""
        return [member.score(prompts, responses, batch_size=batch_size) for member in self.members]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str], *, batch_size: int | None = None,
              progress: bool = False) -> list[float]:
        per_member = [member.score(prompts, responses, batch_size=batch_size, progress=progress)
                      for member in self.members]
        return [sum(values) / len(values) for values in zip(*per_member)]

    def score_pairs(self, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str]
                    ) -> tuple[list[float], list[float], list[float]]:
        """(mean r_a, mean r_b, P(a > b)) per pair, each member scoring both sides once. P comes from the members'
        mean calibrated margin, sigmoid(mean_m (r_a,m - r_b,m) / T_m): each member keeps its own temperature (with
        equal temperatures this is sigmoid((mean r_a - mean r_b) / T))."""
        sides = [_score_both(member, prompts, responses_a, responses_b) for member in self.members]
        count = len(sides)
        r_a = [sum(values) / count for values in zip(*(a for a, _ in sides))]
        r_b = [sum(values) / count for values in zip(*(b for _, b in sides))]
        margins = zip(*([(x - y) / member.meta.temperature for x, y in zip(a, b)]
                        for member, (a, b) in zip(self.members, sides)))
        return r_a, r_b, _compare(sum(values) / count for values in margins)

    def compare(self, prompts: Sequence[Prompt], responses_a: Sequence[str], responses_b: Sequence[str]
                ) -> list[float]:
        """P(a > b) per pair (see `score_pairs`)."""
        return self.score_pairs(prompts, responses_a, responses_b)[2]

    def __repr__(self) -> str:
        return f"RewardEnsemble({self.members!r})"


def member_folders(folder: str | Path) -> list[Path]:
    """The `member-N/` subfolders of an ensemble folder, in N order ([] when there are none)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), child) for child in folder.iterdir()
             if child.is_dir() and (m := MEMBER_PATTERN.match(child.name))]
    return [child for _, child in sorted(found)]


def member_scorers(path: str | Path) -> list[RewardModel]:
    """One scorer per member: an ensemble folder's members, or the one model (disagreement compares them)."""
    model = load_reward_model(path)
    return list(model.members) if isinstance(model, RewardEnsemble) else [model]


def load_reward_model(path_or_paths: str | Path | Sequence[str | Path], *, device: str | torch.device | None = None,
                      dtype: torch.dtype | None = None) -> RewardModel | RewardEnsemble:
    """A RewardEnsemble for a list of folders or a folder with member-*/ subfolders, else a RewardModel."""
    if not isinstance(path_or_paths, (str, Path)):
        return RewardEnsemble.load(list(path_or_paths), device=device, dtype=dtype)
    if member_folders(path_or_paths):
        return RewardEnsemble.load(path_or_paths, device=device, dtype=dtype)
    return RewardModel.load(path_or_paths, device=device, dtype=dtype)
