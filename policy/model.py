"""Loading a policy (any causal LM) and its tokenizer the same way for generation, SFT, DPO, RL and evaluation.

- Names resolve through the model registry (bundled short names, local folders, `.gguf` files, cached HF ids).
- A policy must have a chat template: prompts are chats, and training and generation must format them alike. A
  base model without one gets a clear error; pass `chat_template=` (a Jinja string or a file) to give it one.
- A tokenizer without a pad token pads with EOS (masked positions never count). Generation pads on the left.
- Weights load as safetensors, never with remote code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rlhfkit.core.errors import InputError
from rlhfkit.models.causal_lm import load_causal_lm
from rlhfkit.models.registry import resolve_model


class PolicyModelError(InputError):
    """The model cannot serve as a policy (no chat template, not a causal LM)."""


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: str) -> torch.dtype:
    """bf16 on GPUs that support it, float32 elsewhere (CPU bf16 matmuls are slow on most CPUs)."""
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_policy_tokenizer(model: str, chat_template: str | None = None, padding_side: str = "left") -> Any:
    from transformers import AutoTokenizer

    path = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if chat_template:
        template = Path(chat_template)
        tokenizer.chat_template = template.read_text() if template.is_file() else chat_template
    if tokenizer.chat_template is None:
        raise PolicyModelError(
            f"{model}: the tokenizer has no chat template, and rlhfkit formats every prompt as a chat; use an "
            "instruct model, or give one with --chat-template (a Jinja string or file)")
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise PolicyModelError(f"{model}: the tokenizer has neither a pad nor an EOS token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_weights(model: str, dtype: torch.dtype | str = torch.float32) -> Any:
    """The causal LM behind `model`, on the CPU, ready to train or serve: a LoRA adapter folder (what a LoRA run
    saves) loads its base with the adapter merged in, so a new run trains on top of it instead of stacking a
    second adapter that the reference (adapters off) would not see."""
    try:
        return load_causal_lm(resolve_model(model), dtype)
    except ValueError as exc:  # "Unrecognized configuration class ... for AutoModelForCausalLM"
        raise PolicyModelError(f"{model}: not a causal language model, so it cannot generate: {exc}") from exc


def load_policy(model: str, *, device: str | None = None, dtype: torch.dtype | None = None,
                chat_template: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer with left padding) for `model` (name, folder, .gguf or HF id).

    A folder holding a LoRA adapter (`adapter_config.json`) loads its base model with the adapter merged."""
    device = device or default_device()
    tokenizer = load_policy_tokenizer(model, chat_template)
    loaded = load_weights(model, dtype or default_dtype(device))
    if loaded.config.pad_token_id is None:
        loaded.config.pad_token_id = tokenizer.pad_token_id
    return loaded.to(device).eval(), tokenizer


def messages_of(prompt: Any, system: str | None = None) -> list[dict[str, str]]:
    """A prompt (text or chat messages) as chat messages, with an optional system instruction first.

    An explicit `system` replaces a system message the prompt already has (it is the instruction being tuned)."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system:
        messages = [{"role": "system", "content": system}] + [m for m in messages if m["role"] != "system"]
    return messages
