"""Reward functions for online RL, in TRL's form `f(prompts, completions, **columns) -> list[float | None]`.

- `RewardModelReward`: any rlhfkit reward model or ensemble (anything with `score(prompts, responses)`). It uses
  its own tokenizer and encoding, so the reward model's tokenizer may differ from the policy's. System messages are
  left out of the prompt it sees: the reward judges the answer to the user's request, the same as in training.
- `IFEvalReward`: the share of IFEval instructions an answer follows (`reward.ifeval`), read from the dataset's
  `instruction_id_list` / `instruction_kwargs_json` columns; None (TRL skips it) for prompts without instructions.
- `RewardSources` is the config part that names them (GRPO, RLOO and PPO share it), `reward_functions` builds them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from policy.config import RewardSources
from preference.schema import Prompt
from reward.ifeval import Mode, VerificationError, verify_response
from reward.protocols import RewardScorer
from rlhfkit.core.errors import InputError


def completion_text(completion: Any) -> str:
    """TRL passes conversational completions as [{"role": "assistant", "content": ...}] and plain ones as text."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if m.get("role", "assistant") == "assistant")
    return str(completion)


def user_prompt(prompt: Any) -> Prompt:
    """The prompt without system messages (the reward model and verifier judge the answer to the user)."""
    if isinstance(prompt, str):
        return prompt
    messages = [dict(m) for m in prompt if m.get("role") != "system"]
    return messages[0]["content"] if len(messages) == 1 and messages[0].get("role") == "user" else messages


class RewardModelReward:
    """A reward model as a TRL reward function."""

    def __init__(self, scorer: RewardScorer, name: str = "reward_model"):
        self.scorer = scorer
        self.__name__ = name  # TRL logs each reward under its function's name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        return [float(r) for r in self.scorer.score([user_prompt(p) for p in prompts],
                                                    [completion_text(c) for c in completions])]


class IFEvalReward:
    """The share of a prompt's IFEval instructions that the completion follows."""

    def __init__(self, mode: Mode = "loose", name: str = "ifeval"):
        self.mode: Mode = mode
        self.__name__ = name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], instruction_id_list: Sequence[Any] = (),
                 instruction_kwargs_json: Sequence[str] = (), **_: Any) -> list[float | None]:
        rewards: list[float | None] = []
        for index, (prompt, completion) in enumerate(zip(prompts, completions)):
            ids = instruction_id_list[index] if index < len(instruction_id_list) else None
            if not ids:
                rewards.append(None)
                continue
            try:
                score, _ = verify_response(completion_text(completion), ids,
                                           json.loads(instruction_kwargs_json[index]), user_prompt(prompt), self.mode)
            except VerificationError:
                rewards.append(None)
                continue
            rewards.append(score)
        return rewards


def verifier_columns(metadata: dict[str, Any]) -> dict[str, Any]:
    """Dataset columns `IFEvalReward` reads, from a prompt's metadata (kwargs as JSON: their keys differ by id)."""
    ids = metadata.get("instruction_id_list") or []
    return {"instruction_id_list": list(ids), "instruction_kwargs_json": json.dumps(metadata.get("kwargs") or [])}


def check_reward_sources(config: RewardSources, extra: Sequence[Callable[..., Any]] = ()) -> None:
    """Fail before any work when the config names no reward, or weights that do not match the sources."""
    count = len(config.reward_models) + bool(config.verifier) + len(extra)
    if not count:
        raise InputError("no reward: give a reward model (--reward-model), the verifier (--verifier), or a callable")
    if config.verifier not in (None, "strict", "loose"):
        raise InputError(f"verifier must be 'strict' or 'loose', not {config.verifier!r}")
    if config.reward_weights is not None and len(config.reward_weights) != count:
        raise InputError(f"reward_weights has {len(config.reward_weights)} weights for {count} reward source(s)")


def reward_functions(config: RewardSources, extra: Sequence[Callable[..., Any]] = (), device: Any = None
                     ) -> list[Any]:
    """The reward sources named by the config, then `extra` callables; raises when there is none. Reward models
    load on `device` (each process's own device under accelerate; default: the first GPU, else the CPU)."""
    from reward.model import load_reward_model

    check_reward_sources(config, extra)
    functions: list[Any] = [RewardModelReward(load_reward_model(path, device=device), name=f"reward_model_{i}")
                            for i, path in enumerate(config.reward_models)]
    if config.verifier:
        functions.append(IFEvalReward(config.verifier))
    return functions + list(extra)
