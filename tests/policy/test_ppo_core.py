"""PPO's arithmetic against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from policy.ppo_core import (
    AdaptiveKLController,
    clipped_policy_loss,
    clipped_value_loss,
    explained_variance,
    gae,
    kl_penalised_rewards,
    whiten,
)


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_matches_hand_computation():
    # delta2 = 1 - 0.7 = 0.3; delta1 = 0.7 - 0.6 = 0.1; delta0 = 0.6 - 0.5 = 0.1
    # A2 = 0.3; A1 = 0.1 + 0.9 * 0.3 = 0.37; A0 = 0.1 + 0.9 * 0.37 = 0.433
    advantages, returns = gae(t([0, 0, 1]), t([0.5, 0.6, 0.7]), t([1, 1, 1]), gamma=1.0, lam=0.9)
    assert advantages[0].tolist() == pytest.approx([0.433, 0.37, 0.3])
    assert returns[0].tolist() == pytest.approx([0.933, 0.97, 1.0])


def test_gae_stops_at_the_end_of_the_answer_and_discounts():
    # Last real token is 1: V past it counts as 0, so delta1 = 1 - 0.6 = 0.4; A0 = 0.1 * ... with gamma 0.5:
    # delta0 = 0 + 0.5 * 0.6 - 0.5 = -0.2; A0 = -0.2 + 0.5 * 0.9 * 0.4 = -0.02
    advantages, returns = gae(t([0, 1, 0]), t([0.5, 0.6, 9.9]), t([1, 1, 0]), gamma=0.5, lam=0.9)
    assert advantages[0].tolist() == pytest.approx([-0.02, 0.4, 0.0])
    assert returns[0].tolist() == pytest.approx([0.48, 1.0, 0.0])


def test_kl_penalty_per_token_and_score_on_the_last_real_token():
    rewards, kl = kl_penalised_rewards(torch.tensor([2.0, -1.0]), t([-1, -2, -3], [-1, -1, -1]),
                                       t([-1.5, -2, -2.5], [-1, -2, -1]), t([1, 1, 0], [1, 1, 1]), kl_coef=0.1)
    torch.testing.assert_close(kl, t([0.5, 0, 0], [0, 1, 0]))
    torch.testing.assert_close(rewards, t([-0.05, 2.0, 0], [0, -0.1, -1.0]))


def test_whiten_uses_masked_entries_only():
    out = whiten(t([1, 2, 3, 100]), t([1, 1, 1, 0]))
    std = math.sqrt(2 / 3)
    assert out[0].tolist() == pytest.approx([-1 / std, 0, 1 / std, 0], abs=1e-4)


def test_clipped_policy_loss():
    # ratio 1.5 on both tokens; A = +1: max(-1.5, -1.2) = -1.2 (clipped); A = -1: max(1.5, 1.2) = 1.5
    loss, clip_fraction = clipped_policy_loss(t([math.log(1.5), math.log(1.5)]), t([0, 0]), t([1, -1]), t([1, 1]),
                                              clip_range=0.2)
    assert loss.item() == pytest.approx(0.15)
    assert clip_fraction.item() == pytest.approx(0.5)


def test_clipped_value_loss():
    # V moved 1.0 -> 1.5, clipped to 1.2; return 2: max((1.5-2)^2, (1.2-2)^2) = 0.64; half of it
    loss, clip_fraction = clipped_value_loss(t([1.5]), t([1.0]), t([2.0]), t([1]), clip_range=0.2)
    assert loss.item() == pytest.approx(0.32)
    assert clip_fraction.item() == 1.0
    loss, clip_fraction = clipped_value_loss(t([1.1]), t([1.0]), t([2.0]), t([1]), clip_range=0.2)
    assert loss.item() == pytest.approx(0.5 * 0.81) and clip_fraction.item() == 0.0


def test_adaptive_kl_controller_moves_towards_the_target():
    controller = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    controller.update(current_kl=12.0, n_steps=100)  # error clipped to +0.2
    assert controller.value == pytest.approx(0.1 * (1 + 0.2 * 100 / 10_000))
    controller.update(current_kl=3.0, n_steps=100)  # error -0.5, clipped to -0.2
    assert controller.value == pytest.approx(0.1 * 1.002 * 0.998)


def test_explained_variance():
    returns = t([1, 2, 3, 4])
    assert explained_variance(returns, returns, t([1, 1, 1, 1])) == pytest.approx(1.0)
    assert explained_variance(torch.zeros(1, 4) + 2.5, returns, t([1, 1, 1, 1])) == pytest.approx(0.0)
