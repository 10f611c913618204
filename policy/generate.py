"""Sample K candidate answers per prompt from a policy: batched, seeded, streamed to disk and resumable.

`generate_candidates(prompts, GenerationConfig(...), "candidates.jsonl")` writes one JSON line per prompt:
`{"key", "prompt", "metadata", "candidates": [K texts], "finish_reasons": [...], "model"}`.

- **Batched.** Prompts are sorted by length and generated `batch_size` at a time with left padding, K samples each
  (`num_return_sequences`), so little compute goes to padding.
- **Seeded and resumable.** Batches are fixed chunks of the sorted list, each seeded with `seed + chunk index`, and
  written whole. Lines go to `<out>.partial` (flushed per chunk); a rerun skips finished chunks, so an interrupted
  run resumes and produces the same file as an uninterrupted one. The finished file is renamed into place.
- **Prompts too long** for the model's context (with room for `max_new_tokens`) are skipped and counted, never cut
  silently.
- **vLLM.** `backend="vllm"` (or `"auto"` with vLLM installed and a GPU) samples with vLLM instead, same output format.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from policy.model import load_policy, messages_of
from policy.prompts import PromptItem
from rlhfkit.core.checks import require

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GenerationConfig:
    model: str = "smollm2-135m-instruct"
    """Policy: bundled short name, local folder (a LoRA adapter folder loads merged), `.gguf` file or cached HF id."""
    num_candidates: int = 2
    """K answers sampled per prompt."""
    max_new_tokens: int = 256
    """Answer length limit in tokens; answers cut here get finish reason "length"."""
    temperature: float = 0.8
    """Sampling temperature; 0 means greedy decoding (then K > 1 gives K copies of one answer: use K = 1)."""
    top_p: float = 0.95
    """Nucleus sampling: sample from the smallest token set whose probability reaches top_p."""
    batch_size: int = 8
    """Prompts per forward batch (each brings K sequences)."""
    seed: int = 0
    """Chunk i is sampled with seed + i, so reruns and resumed runs give the same answers."""
    system_prompt: str | None = None
    """A system instruction put before every prompt (replacing a system message the prompt has)."""
    backend: Literal["auto", "transformers", "vllm"] = "auto"
    """`transformers` (any device), `vllm` (GPU, needs the vllm package), or `auto`: vLLM when both are present."""
    chat_template: str | None = None
    """A chat template (Jinja string or file) for a tokenizer that has none."""
    device: str | None = None
    """`cpu`, `cuda`, `cuda:1`, ...; default: CUDA when available."""

    def validate(self) -> None:
        checks = [
            (self.num_candidates >= 1, "num_candidates must be at least 1"),
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.temperature >= 0, "temperature must be 0 (greedy) or positive"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.backend in ("auto", "transformers", "vllm"), "backend must be auto, transformers or vllm"),
            (not (self.temperature == 0 and self.num_candidates > 1),
             "temperature 0 (greedy) gives K identical candidates; use num_candidates 1 or a positive temperature"),
        ]
        require(checks, "GenerationConfig")


@dataclasses.dataclass
class GenerationResult:
    path: Path
    prompts: int  # prompts answered (this run and earlier runs)
    skipped: Counter[str]  # prompts not answered, by reason
    new_tokens: int  # tokens generated in this run
    seconds: float  # wall time of this run's generation

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds else 0.0


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


class _TransformersSampler:
    def __init__(self, config: GenerationConfig):
        self.config = config
        self.model, self.tokenizer = load_policy(config.model, device=config.device, chat_template=config.chat_template)
        context = getattr(self.model.config, "max_position_embeddings", None) or 2048
        self.max_prompt_tokens = max(1, int(context) - config.max_new_tokens)

    def prompt_ids(self, item: PromptItem, system: str | None = None) -> list[int]:
        """Chat-formatted prompt ids, with `system` (default: the config's system prompt) first."""
        ids = self.tokenizer.apply_chat_template(messages_of(item.prompt, system or self.config.system_prompt),
                                                 add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def sample(self, batch: list[list[int]], seed: int) -> list[tuple[list[str], list[str], int]]:
        """For each prompt: (K texts, K finish reasons, tokens generated)."""
        config, tokenizer = self.config, self.tokenizer
        padded = tokenizer.pad({"input_ids": batch}, return_tensors="pt", padding=True)
        padded = {k: v.to(self.model.device) for k, v in padded.items()}
        sampling = ({"do_sample": True, "temperature": config.temperature, "top_p": config.top_p}
                    if config.temperature > 0 else {"do_sample": False})
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = self.model.generate(**padded, max_new_tokens=config.max_new_tokens,
                                         num_return_sequences=config.num_candidates,
                                         pad_token_id=tokenizer.pad_token_id, **sampling)
        new = output[:, padded["input_ids"].shape[1]:]
        eos = {tokenizer.eos_token_id, *([self.model.generation_config.eos_token_id]
                                         if isinstance(self.model.generation_config.eos_token_id, int)
                                         else self.model.generation_config.eos_token_id or [])}
        results = []
        for index in range(len(batch)):
            texts, reasons, count = [], [], 0
            for row in new[index * config.num_candidates:(index + 1) * config.num_candidates].tolist():
                ended = next((i for i, token in enumerate(row) if token in eos), None)
                kept = row if ended is None else row[:ended]
                count += len(kept) + (ended is not None)
                texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
                reasons.append("stop" if ended is not None else "length")
            results.append((texts, reasons, count))
        return results


class _VLLMSampler:
    """vLLM on a GPU: same prompts (chat template applied by rlhfkit), same output format."""

    def __init__(self, config: GenerationConfig):
        from vllm import LLM  # optional extra: pip install "rlhfkit[vllm]"

        from policy.model import load_policy_tokenizer
        from rlhfkit.core.registry import resolve_model

        self.config = config
        self.tokenizer = load_policy_tokenizer(config.model, config.chat_template)
        self.llm = LLM(model=resolve_model(config.model), seed=config.seed, trust_remote_code=False)
        context = self.llm.llm_engine.model_config.max_model_len
        self.max_prompt_tokens = max(1, int(context) - config.max_new_tokens)

    prompt_ids = _TransformersSampler.prompt_ids

    def sample(self, batch: list[list[int]], seed: int) -> list[tuple[list[str], list[str], int]]:
        from vllm import SamplingParams, TokensPrompt

        config = self.config
        params = SamplingParams(n=config.num_candidates, temperature=config.temperature, top_p=config.top_p,
                                max_tokens=config.max_new_tokens, seed=seed)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in batch], params, use_tqdm=False)
        return [([c.text.strip() for c in out.outputs],
                 ["length" if c.finish_reason == "length" else "stop" for c in out.outputs],
                 sum(len(c.token_ids) for c in out.outputs)) for out in outputs]


def _sampler(config: GenerationConfig) -> Any:
    from rlhfkit.core.registry import resolve_model

    adapter = (Path(resolve_model(config.model)) / "adapter_config.json").is_file()
    backend = config.backend
    if backend == "auto":
        # vLLM serves full model folders; a LoRA adapter folder is merged by the transformers path.
        backend = "vllm" if vllm_available() and not adapter else "transformers"
    if backend == "vllm":
        if not vllm_available():
            raise ValueError("backend 'vllm' needs the vllm package and a CUDA GPU (pip install vllm); use "
                             "backend 'transformers' here")
        if adapter:
            raise ValueError(f"{config.model} is a LoRA adapter folder, which the vllm backend does not load; use "
                             "backend 'transformers' (it merges the adapter)")
        return _VLLMSampler(config)
    return _TransformersSampler(config)


class Answerer:
    """Greedy answers in memory under a system instruction that changes from call to call (instruction search).

    Same formatting and batching as `generate_candidates`; `calls` counts prompts answered (the policy-call budget
    of instruction optimisers)."""

    def __init__(self, model: str = "smollm2-135m-instruct", *, max_new_tokens: int = 256, batch_size: int = 8,
                 device: str | None = None, chat_template: str | None = None):
        self.sampler = _TransformersSampler(GenerationConfig(
            model=model, num_candidates=1, temperature=0.0, max_new_tokens=max_new_tokens, batch_size=batch_size,
            device=device, chat_template=chat_template, backend="transformers"))
        self.batch_size = batch_size
        self.calls = 0

    def answer(self, system: str | None, prompts: Sequence[PromptItem]) -> list[str]:
        """One greedy answer per prompt; prompts too long for the context get an empty answer."""
        encoded = [(index, self.sampler.prompt_ids(item, system)) for index, item in enumerate(prompts)]
        fits = [(i, ids) for i, ids in encoded if len(ids) <= self.sampler.max_prompt_tokens]
        fits.sort(key=lambda pair: -len(pair[1]))
        answers = [""] * len(prompts)
        for start in range(0, len(fits), self.batch_size):
            chunk = fits[start:start + self.batch_size]
            for (index, _), (texts, _, _) in zip(chunk, self.sampler.sample([ids for _, ids in chunk], seed=0)):
                answers[index] = texts[0]
        self.calls += len(prompts)
        return answers


def _finished_chunks(partial: Path) -> set[int]:
    """Chunk indexes already written whole to the partial file. Everything after the last whole chunk (a torn line,
    or the first lines of a chunk whose write was cut short) is cut off, so that chunk is written again once."""
    if not partial.exists():
        return set()
    data = partial.read_bytes()
    done: Counter[int] = Counter()
    keep, offset = 0, 0
    for line in data.splitlines(keepends=True):
        offset += len(line)
        if not line.endswith(b"\n"):
            break
        row = json.loads(line)
        done[row["chunk"]] += 1
        if done[row["chunk"]] == row["chunk_size"]:
            keep = offset  # chunks are written one after another: this one is complete
    if keep < len(data):
        with open(partial, "r+b") as handle:
            handle.truncate(keep)
    complete = set()
    for line in data[:keep].splitlines():
        complete.add(json.loads(line)["chunk"])
    return complete


def generate_candidates(prompts: Sequence[PromptItem], config: GenerationConfig | None, out: str | Path, *,
                        progress: bool = True) -> GenerationResult:
    """Answer every prompt K times into `out` (JSONL), resuming a partial earlier run; see the module docstring."""
    from tqdm.auto import tqdm

    config = config or GenerationConfig()
    config.validate()
    if not prompts:
        raise ValueError("no prompts to answer")
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.exists():
        raise FileExistsError(f"{out} already exists; delete it or choose another output file")
    settings = out.with_name(out.name + ".partial.settings.json")
    fingerprint = {**dataclasses.asdict(config), "prompts": [item.key for item in prompts]}
    if partial.exists() and settings.exists() and json.loads(settings.read_text()) != fingerprint:
        raise ValueError(f"{partial} was started with other settings or prompts; delete it (and {settings.name}) "
                         "or choose another output file")
    from rlhfkit.core.atomic import atomic_write_text

    atomic_write_text(settings, json.dumps(fingerprint))
    sampler = _sampler(config)
    skipped: Counter[str] = Counter()
    encoded: list[tuple[PromptItem, list[int]]] = []
    for item in prompts:
        ids = sampler.prompt_ids(item)
        if len(ids) > sampler.max_prompt_tokens:
            skipped["prompt longer than the context allows"] += 1
            log.warning("skipping prompt %s: %d tokens, more than the %d the context leaves room for", item.key,
                        len(ids), sampler.max_prompt_tokens)
            continue
        encoded.append((item, ids))
    # Longest first: the biggest batch shows a memory problem at once, and similar lengths pad little.
    encoded.sort(key=lambda pair: -len(pair[1]))
    chunks = [encoded[i:i + config.batch_size] for i in range(0, len(encoded), config.batch_size)]
    done = _finished_chunks(partial)
    new_tokens, started = 0, time.perf_counter()
    with open(partial, "a", encoding="utf-8") as handle, \
            tqdm(total=len(encoded), desc="generating", unit="prompt", disable=not progress) as bar:
        bar.update(sum(len(chunks[i]) for i in done if i < len(chunks)))
        for index, chunk in enumerate(chunks):
            if index in done:
                continue
            results = sampler.sample([ids for _, ids in chunk], config.seed + index)
            for (item, _), (texts, reasons, count) in zip(chunk, results, strict=True):
                new_tokens += count
                handle.write(json.dumps({"key": item.key, "prompt": item.prompt, "metadata": item.metadata,
                                         "candidates": texts, "finish_reasons": reasons, "model": config.model,
                                         "chunk": index, "chunk_size": len(chunk)}, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
            bar.update(len(chunk))
    seconds = time.perf_counter() - started
    os.replace(partial, out)
    settings.unlink(missing_ok=True)
    return GenerationResult(out, len(encoded), skipped, new_tokens, seconds)


def read_candidates(path: str | Path) -> list[dict[str, Any]]:
    """The rows `generate_candidates` wrote; raises `DataError` naming each bad line."""
    from preference.errors import DataError, Issue
    from preference.readers import read_jsonl

    rows, issues = [], []
    for raw in read_jsonl(Path(path)):
        if raw.issue is not None or raw.data is None:
            issues += [raw.issue] if raw.issue else []
        elif not isinstance(raw.data.get("candidates"), list) or "prompt" not in raw.data:
            issues.append(Issue(str(path), raw.line, "candidates", "each line needs prompt and a candidates list"))
        else:
            rows.append(raw.data)
    if issues:
        raise DataError(issues, f"{path}: {len(issues)} problem(s) in the candidates file")
    return rows
