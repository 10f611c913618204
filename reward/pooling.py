"""How a reward model turns token states into the one vector its scalar head reads.

Hugging Face's BERT classifier reads the [CLS] token through BERT's pooler (dense + tanh). A sentence-transformers
backbone such as all-MiniLM-L6-v2 (rlhfkit's default) was trained for mean pooling instead: its [CLS] state and
pooler weights are left over from pre-training and were never trained to summarise the text. On HH-RLHF pairs a
linear probe on frozen MiniLM features reaches 0.62 with mean pooling and 0.58 with the pooler; after full
fine-tuning the two are within noise of each other (docs/reward.md). So `pooling="auto"` uses the pooling the
backbone was trained with: mean when its own sentence-transformers config says so, the architecture's head
otherwise. Frozen or lightly tuned backbones (LoRA, a linear-probe head start) gain the most.

Mean pooling replaces the base model's `pooler` module (BERT family: BERT, MiniLM, ...) with `MaskedMeanPooler`,
which averages the last hidden states over real tokens; the attention mask reaches it through a forward pre-hook on
the base model, because transformers calls the pooler with the hidden states alone. The model stays a standard
`*ForSequenceClassification` (TRL, PEFT, accelerate and `save_pretrained` work unchanged); the choice is saved as
`rlhfkit_pooling` in its config.json and in rlhfkit_reward.json, and rlhfkit's loaders apply it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from rlhfkit.core.errors import InputError

Pooling = Literal["auto", "model", "mean"]
CONFIG_KEY = "rlhfkit_pooling"
SENTENCE_POOLING_FILE = "1_Pooling/config.json"


class MaskedMeanPooler(torch.nn.Module):
    """Stands in for BERT's pooler: the mean of the last hidden states over the tokens the attention mask keeps."""

    def __init__(self) -> None:
        super().__init__()
        self.mask: torch.Tensor | None = None  # set by the base model's pre-hook before every forward

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask = self.mask
        if mask is None or mask.dim() != 2 or mask.shape != hidden_states.shape[:2]:
            mask = torch.ones(hidden_states.shape[:2], device=hidden_states.device)
        weights = mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _base(model: Any) -> Any:
    """The transformer under the head (`model.bert` for BERT), also through a PEFT wrapper."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, inner.base_model_prefix, None)


def supports_mean_pooling(model: Any) -> bool:
    base = _base(model)
    return base is not None and isinstance(getattr(base, "pooler", None), torch.nn.Module)


def sentence_pooling(source: str) -> str | None:
    """The pooling a sentence-transformers model folder (or cached hub id) says it was trained with, if any."""
    folder = Path(source)
    if folder.is_dir():
        path: Path | None = folder / SENTENCE_POOLING_FILE
    else:
        from transformers.utils import cached_file

        try:
            found = cached_file(source, SENTENCE_POOLING_FILE, _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False)
        except OSError:  # not a hub id either: no sentence-transformers settings to follow
            found = None
        path = Path(found) if found else None
    if path is None or not path.is_file():
        return None
    settings = json.loads(path.read_text())
    if settings.get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls" if settings.get("pooling_mode_cls_token") else None


def resolve_pooling(requested: Pooling, source: str, model: Any) -> str:
    """"model" or "mean" for this backbone. `requested="mean"` on a model without a pooler is a ValueError."""
    if requested == "model":
        return "model"
    if requested == "mean":
        if not supports_mean_pooling(model):
            raise InputError(f"pooling='mean' needs an encoder with a pooler (BERT, MiniLM, ...); {source} "
                             f"({type(model).__name__}) has none: use pooling='model'")
        return "mean"
    if requested != "auto":
        raise InputError(f"pooling must be 'auto', 'model' or 'mean', not {requested!r}")
    return "mean" if sentence_pooling(source) == "mean" and supports_mean_pooling(model) else "model"


def apply_pooling(model: Any, pooling: str) -> Any:
    """Put `pooling` ("model": leave the architecture's head; "mean": `MaskedMeanPooler`) on `model`, in place."""
    if pooling == "model":
        return model
    if pooling != "mean":
        raise InputError(f"unknown pooling {pooling!r} (expected 'model' or 'mean')")
    if not supports_mean_pooling(model):
        raise InputError(f"{type(model).__name__} has no pooler to replace with mean pooling")
    base = _base(model)
    if isinstance(base.pooler, MaskedMeanPooler):
        return model
    pooler = MaskedMeanPooler()
    base.pooler = pooler

    def remember_mask(module: Any, args: tuple, kwargs: dict) -> None:
        # BertModel.forward(input_ids, attention_mask, ...): callers pass the mask by keyword or second.
        pooler.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    base.register_forward_pre_hook(remember_mask, with_kwargs=True)
    setattr(model.config, CONFIG_KEY, "mean")
    return model


def saved_pooling(config: Any, meta_pooling: str | None) -> str:
    """The pooling a saved model was trained with: rlhfkit_reward.json first, else its config.json, else the model's."""
    return meta_pooling or getattr(config, CONFIG_KEY, None) or "model"
