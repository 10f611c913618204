"""Online RL with reward models and verifiers: TRL's `GRPOTrainer` / `RLOOTrainer` behind
`train_rl(prompts, RLTrainingConfig(algo="grpo" | "rloo", ...))`.

The policy samples `num_generations` answers per prompt; each reward source scores them (rlhfkit reward models and
ensembles through `RewardModelReward`, IFEval instructions through `IFEvalReward`, or any TRL-style callable), the
weighted sum is the reward, and advantages are taken within each prompt's group (GRPO: group-normalised; RLOO: the
leave-one-out baseline). `beta` weighs the KL penalty to the reference policy (the base model with LoRA adapters off).
Reward, KL and answer length are logged and plotted in `curves.png`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from datasets import Dataset

from policy.model import load_policy_tokenizer, load_weights, messages_of
from policy.prompts import PromptItem
from policy.rewards import RewardSources, check_reward_sources, reward_functions, verifier_columns
from policy.training import (
    PolicyTrainingConfig,
    callbacks,
    peft_config,
    prepare_output,
    train_and_save,
    trl_common_args,
)
from rlhfkit.core.checks import require
from rlhfkit.core.errors import InputError

ALGOS = ("grpo", "rloo")


@dataclasses.dataclass
class RLTrainingConfig(PolicyTrainingConfig, RewardSources):
    output_dir: str = "runs/rl"
    learning_rate: float = 1e-5
    # -- algorithm -----------------------------------------------------------------------------------------------
    algo: Literal["grpo", "rloo"] = "grpo"
    """`grpo` (group-normalised advantages, TRL's GRPOTrainer) or `rloo` (leave-one-out baseline, RLOOTrainer).
    PPO with a value model is `policy.ppo`."""
    num_generations: int = 4
    """Answers sampled per prompt (the group). per_device_train_batch_size x gradient_accumulation_steps must be a
    multiple of it."""
    max_completion_length: int = 128
    """Answer length limit in tokens."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    beta: float = 0.04
    """KL penalty to the reference policy (0 switches it off and skips the reference forward pass)."""
    scale_rewards: bool = True
    """Divide advantages by the group's reward std (GRPO) / normalise advantages (RLOO)."""
    use_vllm: bool = False
    """Generate rollouts with vLLM (GPU; TRL's colocate mode)."""

    def validate(self) -> None:
        super().validate()
        group = self.per_device_train_batch_size * self.gradient_accumulation_steps
        checks = [
            (self.algo in ALGOS, f"algo must be one of {', '.join(ALGOS)} (PPO: rlhfkit policy rl --algo ppo)"),
            (self.num_generations >= 2, "num_generations must be at least 2 (advantages compare answers in a group)"),
            (group % self.num_generations == 0,
             f"per_device_train_batch_size x gradient_accumulation_steps ({group}) must be a multiple of "
             f"num_generations ({self.num_generations})"),
            (self.max_completion_length >= 1, "max_completion_length must be at least 1"),
            (self.temperature > 0, "temperature must be positive (rollouts are sampled)"),
            (self.beta >= 0, "beta must be 0 or positive"),
        ]
        require(checks, "RLTrainingConfig")


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
