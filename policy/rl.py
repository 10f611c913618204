"""Online RL with reward models and verifiers: TRL's `GRPOTrainer` / `RLOOTrainer` behind
`train_rl(prompts, RLTrainingConfig(algo="grpo" | "rloo", ...))`.

The policy samples `num_generations` answers per prompt; each reward source scores them (rlhfkit reward models and
ensembles through `RewardModelReward`, IFEval instructions through `IFEvalReward`, or any TRL-style callable), the
weighted sum is the reward, and advantages are taken within each prompt's group (GRPO: group-normalised; RLOO: the
leave-one-out baseline). `beta` weighs the KL penalty to the reference policy (the base model with LoRA adapters off).
Reward, KL and answer length are logged and plotted in `curves.png`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from datasets import Dataset

from policy.config import RLTrainingConfig
from policy.model import load_policy_tokenizer, load_weights, messages_of
from policy.prompts import PromptItem
from policy.rewards import check_reward_sources, reward_functions, verifier_columns
from policy.training import (
    callbacks,
    peft_config,
    prepare_output,
    train_and_save,
    trl_common_args,
)
from rlhfkit.core.errors import InputError


def rl_dataset(prompts: Sequence[PromptItem], system_prompt: str | None) -> Dataset:
    if not prompts:
        raise InputError("no prompts to train on")
    return Dataset.from_list([{"prompt": messages_of(item.prompt, system_prompt), **verifier_columns(item.metadata)}
                              for item in prompts])


def _trainer_class(algo: str) -> tuple[type, type]:
    if algo == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOConfig, GRPOTrainer
    from trl import RLOOConfig, RLOOTrainer

    return RLOOConfig, RLOOTrainer


def train_rl(prompts: Sequence[PromptItem], config: RLTrainingConfig | None = None,
             extra_rewards: Sequence[Callable[..., Any]] = ()) -> dict[str, Any]:
    """Update the policy online on `prompts`; returns the run summary (also in `<output_dir>/summary.json`)."""
    config = config or RLTrainingConfig()
    config.validate()
    dataset = rl_dataset(prompts, config.system_prompt)
    check_reward_sources(config, extra_rewards)
    tokenizer = load_policy_tokenizer(config.model, config.chat_template, padding_side="left")
    torch.manual_seed(config.seed)
    model = load_weights(config.model)  # an adapter folder comes merged
    config_class, trainer_class = _trainer_class(config.algo)
    specific: dict[str, Any] = {
        "num_generations": config.num_generations,
        "max_completion_length": config.max_completion_length,
        "temperature": config.temperature,
        "beta": config.beta,
        "reward_weights": config.reward_weights,
        "use_vllm": config.use_vllm,
        "log_completions": False,
    }
    if config.algo == "grpo":
        specific["scale_rewards"] = "group" if config.scale_rewards else "none"
    else:
        specific["normalize_advantages"] = config.scale_rewards
    if config.use_vllm:
        specific["vllm_mode"] = "colocate"
    args = config_class(**trl_common_args(config), **specific)
    prepare_output(config)  # after the TRL arguments: they set up the distributed state it uses
    from accelerate import PartialState

    functions = reward_functions(config, extra_rewards, device=PartialState().device)  # this process's device
    trainer = trainer_class(model=model, reward_funcs=functions, args=args, train_dataset=dataset,
                            processing_class=tokenizer, peft_config=peft_config(config), callbacks=callbacks())
    names = [f"rewards/{getattr(f, '__name__', type(f).__name__)}/mean" for f in functions]
    return train_and_save(trainer, config, config.algo, {"prompts": len(dataset), "rewards": names},
                          ["reward", "kl", "reward_std", "completions/mean_length", "loss", *names])
