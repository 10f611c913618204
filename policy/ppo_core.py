"""The arithmetic of PPO for language models, separate from the trainer so each piece can be checked by hand.

Shapes: B sequences x T response tokens; `mask` is 1 on real response tokens (up to and including EOS), 0 after.
- `kl_penalised_rewards`: per-token reward -kl_coef * (log pi - log pi_ref), plus the sequence score on its last
  real token (the reward model judges whole answers);
- `gae`: generalised advantage estimation (gamma, lambda) and the returns the critic learns;
- `whiten`: masked standardisation of advantages;
- `clipped_policy_loss` / `clipped_value_loss`: PPO's clipped surrogate and clipped value loss, with clip fractions;
- `AdaptiveKLController` / `FixedKLController`: the KL coefficient (Ziegler et al. 2019's proportional controller);
- `explained_variance`: how much of the returns' variance the critic explains (1 is perfect, <= 0 useless).
"""

from __future__ import annotations

import dataclasses

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(values, mask)
    return masked_mean((values - mean) ** 2, mask)


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / std over the masked entries (mean kept when shift_mean is False); masked entries -> 0."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_penalised_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-token rewards [B, T], per-token KL estimate [B, T]); the score lands on each sequence's last real token.

    The KL estimate is log pi - log pi_ref of the sampled token (k1): unbiased for KL(pi || pi_ref)."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards * mask, kl


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns), both [B, T]: A_t = sum_k (gamma lam)^k delta_{t+k}, delta_t = r_t + gamma V_{t+1} - V_t,
    with V = 0 past the last real token; returns = advantages + values."""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        running = running * mask[:, t]  # nothing flows back from padding
        advantages[:, t] = running
    return advantages * mask, (advantages + values) * mask


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clip fraction): mean over tokens of max(-A r, -A clip(r, 1-eps, 1+eps)), r = pi / pi_old."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_fraction


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, clip fraction): 0.5 * mean over tokens of max((V - R)^2, (clip(V, V_old +- eps) - R)^2)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    clip_fraction = masked_mean((clipped > unclipped).float(), mask)
    return loss, clip_fraction


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    var = masked_var(returns, mask)
    if var.item() == 0:
        return float("nan")
    return float(1 - masked_var(returns - values, mask) / var)


@dataclasses.dataclass
class FixedKLController:
    value: float

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


@dataclasses.dataclass
class AdaptiveKLController:
    """Ziegler et al. (2019): nudge the coefficient so the observed KL tracks `target`."""

    value: float
    target: float
    horizon: int

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon
