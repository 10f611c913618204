"""Tiny randomly initialised models on the real tokenizers, for fast tests of the training code.

The tokenizers are the bundled ones (real vocabulary, special tokens and chat template), so data collation, padding
and chat formatting are exercised exactly as with the real model; only the network is a few MB instead of
hundreds of MB. Weights are random: outputs are meaningless, shapes and plumbing are not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhfkit.core.atomic import atomic_dir
from rlhfkit.models.registry import load_tokenizer

TokenizerLike = str | PreTrainedTokenizerBase


def _tokenizer(tokenizer: TokenizerLike) -> PreTrainedTokenizerBase:
    return load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer


def _seeded_init(model_class: type[PreTrainedModel], config: Any, seed: int) -> PreTrainedModel:
    # fork_rng: seeding must not disturb the caller's random stream (devices=[]: CPU only, no CUDA warning).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model_class(config).eval()


def tiny_causal_lm(
    tokenizer: TokenizerLike = "smollm2-135m-instruct",
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    **overrides: Any,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """A tiny Llama causal LM sized to `tokenizer` (a name/path for `load_tokenizer`, or a tokenizer object).

    The tokenizer keeps its chat template; if it has no pad token, pad is set to eos (on the object passed in).
    `overrides` go into the `LlamaConfig`.
    """
    tok = _tokenizer(tokenizer)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    settings: dict[str, Any] = {
        # len(): the base vocabulary plus added special tokens; every id the tokenizer can emit needs a row.
        "vocab_size": len(tok),
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_heads,
        "max_position_embeddings": 1024,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        # Like SmolLM2: the output layer shares the embedding matrix (also halves the tiny model's size).
        "tie_word_embeddings": True,
    }
    settings.update(overrides)
    return _seeded_init(LlamaForCausalLM, LlamaConfig(**settings), seed), tok


def tiny_encoder(
    tokenizer: TokenizerLike = "minilm-l6",
    *,
    num_labels: int = 1,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    **overrides: Any,
) -> tuple[BertForSequenceClassification, PreTrainedTokenizerBase]:
    """A tiny BERT sequence classifier (num_labels=1: a scalar reward head) sized to `tokenizer`.

    `overrides` go into the `BertConfig`.
    """
    tok = _tokenizer(tokenizer)
    settings: dict[str, Any] = {
        "vocab_size": len(tok),
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        # Position table as long as the tokenizer lets inputs be (512 for MiniLM), so truncation keeps them valid.
        "max_position_embeddings": min(tok.model_max_length, 512),
        "pad_token_id": tok.pad_token_id,
        "num_labels": num_labels,
    }
    settings.update(overrides)
    return _seeded_init(BertForSequenceClassification, BertConfig(**settings), seed), tok


def save_tiny(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | os.PathLike[str]) -> Path:
    """Save model (safetensors) and tokenizer into `path` atomically, so `from_pretrained(path)` loads both."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)  # transformers 5 always writes safetensors
        tokenizer.save_pretrained(tmp)
    return path
