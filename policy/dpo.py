"""DPO from preference judgments with TRL's `DPOTrainer`: `train_dpo(records, DPOTrainingConfig(...))`.

What rlhfkit adds around TRL:
- **The data layer's policies.** Judgments are aggregated per pair; ties are dropped or trained in both orders
  (`ties="margin0"`: the loss then pulls the two log-ratios together); both-bad pairs are dropped or treated as ties.
  The summary reports every pair kept and dropped, by reason.
- **Strength as sample weights.** TRL's DPO losses take no per-pair margin, so judgment strength (slight / clear /
  strong -> 0.5 / 1 / 2) weights how often a pair is drawn (sampling with replacement in proportion to its weight,
  the same gradient in expectation as a weighted loss). Pairs without a strength, and ties, weigh 1.
- **Chat formatting as in generation.** Every prompt becomes chat messages (with the same optional system prompt)
  so the policy is trained on exactly the text it is sampled from.
- LoRA by default (the reference is the base with adapters switched off: no second model in memory), resumable
  checkpoints, a NaN-loss stop, curves of loss, reward margin and accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from policy.config import DPOTrainingConfig
from policy.model import load_policy_tokenizer, load_weights, messages_of
from policy.training import (
    callbacks,
    peft_config,
    prepare_output,
    train_and_save,
    trl_common_args,
)
from preference.export import ExportPolicy, trainable_pairs
from preference.schema import PreferenceRecord

log = logging.getLogger(__name__)

class WeightedDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer drawing training pairs in proportion to `sample_weights` (None: TRL's own sampler)."""

    def __init__(self, *args: Any, sample_weights: list[float] | None = None, **kwargs: Any):
        self.sample_weights = sample_weights
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.sample_weights is None:
            return super()._get_train_sampler(train_dataset)
        generator = torch.Generator().manual_seed(self.args.seed)
        return torch.utils.data.WeightedRandomSampler(self.sample_weights, num_samples=len(self.sample_weights),
                                                      replacement=True, generator=generator)


def dpo_rows(records: Iterable[PreferenceRecord], config: DPOTrainingConfig
             ) -> tuple[list[dict[str, Any]], list[float], dict[str, Any]]:
    """(conversational prompt/chosen/rejected rows, their sample weights, the export report)."""
    policy = ExportPolicy(ties=config.ties, both_bad=config.both_bad, aggregate=config.aggregate,
                          min_agreement=config.min_agreement)
    pairs, report = trainable_pairs(records, policy, "DPO")
    if config.pairs_per_prompt is not None:
        pairs = strongest_per_prompt(pairs, config.pairs_per_prompt, config.seed)
    rows, weights = [], []
    for pair in pairs:
        rows.append({
            "prompt": messages_of(pair["prompt"], config.system_prompt),
            "chosen": _assistant(pair["chosen"]),
            "rejected": _assistant(pair["rejected"]),
        })
        margin = float(pair.get("margin") or 0.0)
        weights.append(margin if margin > 0 else 1.0)
    return rows, weights, report.as_dict()


def strongest_per_prompt(pairs: list[dict[str, Any]], limit: int, seed: int = 0) -> list[dict[str, Any]]:
    """At most `limit` pairs per prompt, the largest margin first; equal margins in a seeded random order."""
    import json
    import random

    rng = random.Random(seed)
    by_prompt: dict[str, list[tuple[float, float, int]]] = {}
    for index, pair in enumerate(pairs):
        key = json.dumps(pair["prompt"], sort_keys=True)
        by_prompt.setdefault(key, []).append((-float(pair.get("margin") or 0.0), rng.random(), index))
    kept = sorted(index for group in by_prompt.values() for *_, index in sorted(group)[:limit])
    return [pairs[index] for index in kept]


def _assistant(completion: Any) -> list[dict[str, str]]:
    return completion if isinstance(completion, list) else [{"role": "assistant", "content": completion}]


def train_dpo(records: Iterable[PreferenceRecord], config: DPOTrainingConfig | None = None) -> dict[str, Any]:
    """Update the policy on `records` with DPO; returns the run summary (also in `<output_dir>/summary.json`)."""
    config = config or DPOTrainingConfig()
    config.validate()
    rows, weights, report = dpo_rows(records, config)
    tokenizer = load_policy_tokenizer(config.model, config.chat_template, padding_side="right")
    torch.manual_seed(config.seed)
    model = load_weights(config.model)  # an adapter folder comes merged
    args = DPOConfig(**trl_common_args(config), beta=config.beta, loss_type=list(config.loss_type),
                     loss_weights=config.loss_weights, label_smoothing=config.label_smoothing,
                     max_length=config.max_length, precompute_ref_log_probs=config.precompute_ref_log_probs)
    prepare_output(config)  # after the TRL arguments: they set up the distributed state it uses
    uniform = not config.strength_weighting or len(set(weights)) == 1
    trainer = WeightedDPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                 processing_class=tokenizer, peft_config=peft_config(config),
                                 callbacks=callbacks(), sample_weights=None if uniform else weights)
    extra = {"pairs": len(rows), "export": report, "weighted_sampling": not uniform}
    return train_and_save(trainer, config, "dpo", extra,
                          ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
                           "grad_norm"])
