"""Start the reward head from a linear probe instead of at random (LP-FT: Kumar et al., 2022, "Fine-Tuning can
Distort Pretrained Features and Underperform Out-of-Distribution").

A fresh head is noise, so the first steps of fine-tuning push arbitrary gradients into the backbone; with a few
thousand pairs and a small learning rate the head also grows slowly. Fitting the head first on frozen features, by
the same pairwise logistic loss TRL trains with, gives fine-tuning a head that already points the right way.

The features are the head's inputs (whatever the pooling gives), captured by a forward hook over the training pairs
with the backbone frozen and in eval mode; the fit is L2-regularised logistic regression on chosen - rejected
features (L-BFGS, full batch: a few thousand rows of a few hundred floats).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch

from reward.meta import RewardMeta
from reward.model import RewardModel

log = logging.getLogger(__name__)

# L2 strength on the head's weights, relative to the mean pairwise loss. On HH-RLHF with mean-pooled MiniLM
# features, 1e-2 gave the best held-out probe (1e-1 and 1e-3 within a point; 1e-4 over-fits).
L2 = 1e-2


def head_module(model: Any) -> torch.nn.Linear:
    """The one-output linear layer that turns the pooled vector into the reward (`classifier`, `score`, ...)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    prefix = inner.base_model_prefix + "."
    found = [module for name, module in inner.named_modules()
             if isinstance(module, torch.nn.Linear) and module.out_features == 1 and not name.startswith(prefix)]
    if len(found) != 1:
        raise ValueError(f"{type(inner).__name__}: expected one scalar output layer, found {len(found)}")
    return found[0]


def head_inputs(model: Any, tokenizer: Any, sequences: list[list[int]]) -> torch.Tensor:
    """The vectors the head reads for `sequences` (frozen backbone, eval mode), in order."""
    captured: dict[int, torch.Tensor] = {}
    scorer = RewardModel(model, tokenizer, RewardMeta(backbone="", max_length=max(map(len, sequences))))
    head = head_module(model)
    rows: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda module, args, output: captured.__setitem__(0, args[0].detach()))
    try:
        order: list[int] = []
        with torch.inference_mode():
            for batch in scorer.batches([len(ids) for ids in sequences]):
                scorer.forward_ids([sequences[i] for i in batch])
                features = captured[0]
                if features.dim() == 3:  # decoder heads score every position; the reward is the last real token
                    lengths = torch.as_tensor([len(sequences[i]) for i in batch], device=features.device)
                    features = features[torch.arange(len(batch), device=features.device), lengths - 1]
                rows.append(features.float().cpu())
                order += batch
    finally:
        hook.remove()
    stacked = torch.cat(rows)
    result = torch.empty_like(stacked)
    result[torch.as_tensor(order)] = stacked
    return result


def fit_pairwise_probe(chosen: torch.Tensor, rejected: torch.Tensor, margins: torch.Tensor | None = None,
                       l2: float = L2) -> torch.Tensor:
    """Weights w minimising mean(-log sigmoid((chosen - rejected) @ w - margin)) + l2 * |w|^2."""
    diff = chosen - rejected
    margin = margins if margins is not None else torch.zeros(len(diff))
    weights = torch.zeros(diff.shape[1], requires_grad=True)
    optimiser = torch.optim.LBFGS([weights], max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.softplus(-(diff @ weights - margin)).mean() + l2 * weights.square().sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return weights.detach()


@dataclasses.dataclass(frozen=True)
class ProbeFit:
    weights: torch.Tensor  # the head's weight row
    stats: dict[str, float]  # probe_train_accuracy, probe_train_loss (saved in rlhfkit_reward.json)


def fit_head_probe(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> ProbeFit:
    """The linear probe on `rows` (chosen_ids, rejected_ids, optional margin) over `model`'s frozen features.

    The features depend only on the backbone's pretrained weights, so an ensemble fits it once for all members."""
    was_training = model.training
    chosen = head_inputs(model, tokenizer, [row["chosen_ids"] for row in rows])
    rejected = head_inputs(model, tokenizer, [row["rejected_ids"] for row in rows])
    model.train(was_training)
    margins = torch.tensor([float(row.get("margin", 0.0)) for row in rows])
    weights = fit_pairwise_probe(chosen, rejected, margins)
    diff = (chosen - rejected) @ weights
    stats = {"probe_train_accuracy": float((diff > 0).float().mean()),
             "probe_train_loss": float(torch.nn.functional.softplus(-(diff - margins)).mean())}
    log.info("head started from a linear probe: train accuracy %.3f, loss %.4f", stats["probe_train_accuracy"],
             stats["probe_train_loss"])
    return ProbeFit(weights, stats)


def set_head(model: Any, weights: torch.Tensor) -> None:
    """Put the probe's weights into `model`'s scalar head (bias zero: pairwise training never sees it)."""
    head = head_module(model)
    with torch.no_grad():
        head.weight.copy_(weights.to(head.weight.dtype).unsqueeze(0))
        if head.bias is not None:
            head.bias.zero_()


def init_head_from_probe(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Fit the probe on `rows` and set `model`'s head to it; returns the probe's training accuracy and loss."""
    fit = fit_head_probe(model, tokenizer, rows)
    set_head(model, fit.weights)
    return fit.stats
