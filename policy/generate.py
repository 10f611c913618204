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
- **Engines.** `backend="vllm-server"` samples with vLLM served from its own virtualenv (`rlhfkit.models.vllm_server`:
  the CPU build in CI, the CUDA build on GPUs, one code path), `"vllm"` with vLLM imported in this process (a GPU
  machine whose main virtualenv has vllm), `"transformers"` with `transformers.generate` (always there).
  `"auto"` takes the first of vllm, vllm-server, transformers that is installed, and falls back to transformers
  (logged) when an engine fails to start. Engines get the same token ids (the chat template is applied here), a seed
  per prompt, and write the same rows; a resumed file is never continued by another engine. `server_url` sends
  the same requests to a vLLM server someone else runs (another machine's GPUs), with no fallback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from policy.config import DEFAULT_BATCH, GenerationConfig
from policy.model import load_policy, messages_of
from policy.prompts import PromptItem
from rlhfkit.core.errors import InputError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class GenerationResult:
    path: Path
    prompts: int  # prompts answered (this run and earlier runs)
    skipped: Counter[str]  # prompts not answered, by reason
    new_tokens: int  # tokens generated in this run
    seconds: float  # wall time of this run's generation
    engine: str = "transformers"  # the backend that generated (after `auto` was resolved)

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
        from rlhfkit.models.registry import resolve_model

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


class _ServedSampler:
    """vLLM served from its own virtualenv (`rlhfkit.models.vllm_server.shared_server`): token ids in, texts out."""

    def __init__(self, config: GenerationConfig):
        from policy.model import load_policy_tokenizer
        from rlhfkit.models.causal_lm import serve_local
        from rlhfkit.models.vllm_server import RemoteServer

        self.config = config
        self.tokenizer = load_policy_tokenizer(config.model, config.chat_template)
        parallel = [("--tensor-parallel-size", config.tensor_parallel_size),
                    ("--data-parallel-size", config.data_parallel_size)]
        flags = tuple(str(part) for flag, size in parallel if size > 1 for part in (flag, size))
        # Only flags that change the engine: with none, every caller of this model shares one server.
        self.server = RemoteServer(config.server_url) if config.server_url else serve_local(
            config.model, **({"extra_args": flags} if flags else {}))
        self.max_prompt_tokens = max(1, self.server.max_model_len - config.max_new_tokens)
        self.stop_ids = sorted({t for t in (self.tokenizer.eos_token_id,) if t is not None})

    prompt_ids = _TransformersSampler.prompt_ids

    def sample(self, batch: list[list[int]], seed: int) -> list[tuple[list[str], list[str], int]]:
        config = self.config
        # One seed per prompt, fixed by the chunk's seed and the prompt's place in it: a resumed chunk is the same.
        seeds = [(seed * 1009 + position) % 2**31 for position in range(len(batch))]
        return self.server.complete(batch, n=config.num_candidates, temperature=config.temperature,
                                    top_p=config.top_p, max_tokens=config.max_new_tokens, seeds=seeds,
                                    stop_token_ids=self.stop_ids)


def resolve_backend(config: GenerationConfig) -> str:
    """The backend `config.backend` names, with `auto` made concrete: what is installed, fastest first."""
    from rlhfkit.models import vllm_server

    if config.backend != "auto":
        return config.backend
    if config.server_url:
        return "vllm-server"  # a server someone runs: nothing to install here
    if vllm_available():
        return "vllm"
    if vllm_server.installed() and (config.device or "cpu").split(":")[0] in ("cpu", "cuda"):
        return "vllm-server"
    return "transformers"


def _sampler(config: GenerationConfig, backend: str | None = None) -> Any:
    from rlhfkit.models.registry import resolve_model
    from rlhfkit.models.vllm_server import EngineError

    backend = backend or resolve_backend(config)
    if backend == "vllm":
        if not vllm_available():
            raise InputError("backend 'vllm' needs the vllm package in this virtualenv and a CUDA GPU; use "
                             "'vllm-server' (vLLM in its own virtualenv) or 'transformers' here")
        if (Path(resolve_model(config.model)) / "adapter_config.json").is_file():
            raise InputError(f"{config.model} is a LoRA adapter folder, which the in-process vllm backend does not "
                             "load; use 'vllm-server' (it serves the merged model) or 'transformers'")
        return _VLLMSampler(config)
    if backend == "vllm-server":
        try:
            return _ServedSampler(config)
        except EngineError as exc:
            if config.backend != "auto" or config.server_url:  # asked for by name: its failure is the answer
                raise
            log.warning("the vLLM engine did not start, generating with transformers instead: %s",
                        str(exc).splitlines()[0])
    return _TransformersSampler(config)


class Answerer:
    """Greedy answers in memory under a system instruction that changes from call to call (instruction search).

    Same formatting and batching as `generate_candidates`; `calls` counts prompts answered (the policy-call budget
    of instruction optimisers)."""

    def __init__(self, model: str = "smollm2-135m-instruct", *, max_new_tokens: int = 256,
                 batch_size: int | None = None, device: str | None = None, chat_template: str | None = None,
                 backend: str = "auto", progress: bool = False):
        config = GenerationConfig(model=model, num_candidates=1, temperature=0.0, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, device=device, chat_template=chat_template,
                                  backend=backend)  # type: ignore[arg-type]
        config.validate()
        self.backend = resolve_backend(config)
        self.sampler = _sampler(config, self.backend)
        self.batch_size = batch_size or DEFAULT_BATCH[self.backend]
        self.calls = 0
        self.progress = progress  # a bar per answer() call (a command scoring one instruction), off in searches

    def answer(self, system: str | None, prompts: Sequence[PromptItem]) -> list[str]:
        """One greedy answer per prompt; prompts too long for the context get an empty answer."""
        encoded = [(index, self.sampler.prompt_ids(item, system)) for index, item in enumerate(prompts)]
        fits = [(i, ids) for i, ids in encoded if len(ids) <= self.sampler.max_prompt_tokens]
        fits.sort(key=lambda pair: -len(pair[1]))
        answers = [""] * len(prompts)
        from tqdm.auto import tqdm

        with tqdm(total=len(fits), desc="answering", unit="prompt", disable=not self.progress) as bar:
            for start in range(0, len(fits), self.batch_size):
                chunk = fits[start:start + self.batch_size]
                for (index, _), (texts, _, _) in zip(chunk, self.sampler.sample([ids for _, ids in chunk], seed=0)):
                    answers[index] = texts[0]
                bar.update(len(chunk))
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
                        progress: bool = True, on_chunk: Callable[[int], None] | None = None) -> GenerationResult:
    """Answer every prompt K times into `out` (JSONL), resuming a partial earlier run; see the module docstring.

    `on_chunk(index)` is called after each chunk is saved."""
    from tqdm.auto import tqdm

    config = config or GenerationConfig()
    config.validate()
    if not prompts:
        raise InputError("no prompts to answer")
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    if out.exists():
        raise FileExistsError(f"{out} already exists; delete it or choose another output file")
    settings = out.with_name(out.name + ".partial.settings.json")
    backend = resolve_backend(config)
    batch_size = config.batch_size or DEFAULT_BATCH[backend]
    saved = json.loads(settings.read_text()) if partial.exists() and settings.exists() else None

    def check(engine: str) -> dict[str, Any]:
        # The engine is part of the settings: a file begun by one engine is never finished by another. Where the
        # engine runs is not (a server that restarts elsewhere, more GPUs): the same engine and model answer alike.
        where = ("server_url", "tensor_parallel_size", "data_parallel_size")
        fingerprint = {**{k: v for k, v in dataclasses.asdict(config).items() if k not in where}, "engine": engine,
                       "prompts": [item.key for item in prompts]}
        if saved is not None and saved != fingerprint:
            other = {k for k in fingerprint if saved.get(k) != fingerprint[k]}
            raise InputError(f"{partial} was begun with other settings ({', '.join(sorted(other))}; engine "
                             f"{saved.get('engine')}, now {engine}); delete it (and {settings.name}), choose another "
                             "output file, or rerun with the settings it was begun with")
        return fingerprint

    check(backend)  # before an engine starts
    sampler = _sampler(config, backend)
    if isinstance(sampler, _TransformersSampler):  # auto may have fallen back
        backend = "transformers"
    from rlhfkit.core.atomic import atomic_write_text

    atomic_write_text(settings, json.dumps(check(backend)))
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
    chunks = [encoded[i:i + batch_size] for i in range(0, len(encoded), batch_size)]
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
            if on_chunk is not None:
                on_chunk(index)
    seconds = time.perf_counter() - started
    os.replace(partial, out)
    settings.unlink(missing_ok=True)
    return GenerationResult(out, len(encoded), skipped, new_tokens, seconds, backend)


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
