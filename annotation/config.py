"""`ActiveLoopConfig`: the settings of `rlhfkit annotate loop`, documented where they are defined."""

from __future__ import annotations

import dataclasses
from typing import Literal

from rlhfkit.core.checks import require


@dataclasses.dataclass
class ActiveLoopConfig:
    strategy: Literal["random", "uncertainty", "disagreement"] = "disagreement"
    """How each round after the first chooses pairs (`annotation.select`): `random`, `uncertainty` (reward margin
    nearest zero under the last round's model) or `disagreement` (the last round's ensemble members disagree most)."""
    rounds: int = 3
    """Select -> label -> retrain rounds after the first, random one."""
    start: int = 50
    """Pairs labeled in round 0, a seeded random sample of the pool (the first model needs labels to learn from)."""
    budget: int = 50
    """Pairs chosen and labeled in each later round."""
    diverse: bool = False
    """No two pairs with near-duplicate prompts in one round's batch while distinct ones are left
    (`annotation.select.diverse_batch`)."""
    ensemble: int = 2
    """Reward models trained per round (seeds seed, seed+1, ...); `disagreement` compares them, so it needs 2+."""
    seed: int = 0
    """Seed of the random sample, of tie-breaking and of each round's training (seed + round)."""

    def validate(self) -> None:
        require([
            (self.strategy in ("random", "uncertainty", "disagreement"),
             "strategy must be random, uncertainty or disagreement"),
            (self.rounds >= 0, "rounds must be 0 or more"),
            (self.start >= 1, "start must be at least 1 pair"),
            (self.budget >= 1, "budget must be at least 1 pair"),
            (self.ensemble >= 1, "ensemble must be at least 1"),
            (not (self.strategy == "disagreement" and self.ensemble < 2),
             "strategy disagreement compares an ensemble's members: ensemble must be at least 2 (an ensemble of "
             "one member cannot disagree)"),
        ], "ActiveLoopConfig")
