"""The run's results in plain sentences, each with its interval and whether the interval excludes chance.

Read from the stage results in the manifest, so `metrics.json`, the report and the end of `rlhfkit run` say the same.
"""

from __future__ import annotations

from typing import Any


def _points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def headlines(stages: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"name", "text", "significant"}] for the reward model, the policy update and the instruction search."""
    out = []
    reward = stages.get("reward", {}).get("result", {})
    if reward.get("accuracy") is not None:
        low, high = reward["accuracy_ci"]
        significant = low is not None and low > 0.5
        out.append({"name": "reward", "significant": significant, "text": (
            f"The reward model ranks {reward['accuracy']:.1%} of {reward['decisive_test_pairs']} held-out decisive "
            f"pairs correctly (95% CI {low:.1%} to {high:.1%}): "
            + ("better than chance." if significant else "not distinguishable from chance (50%)."))})
    evaluation = stages.get("evaluate", {}).get("result", {})
    if evaluation.get("pass_rate_delta") is not None:
        low, high = evaluation["pass_rate_delta_ci"]
        delta, significant = evaluation["pass_rate_delta"], low is not None and low > 0
        direction = "up" if delta > 0 else "down" if delta < 0 else "unchanged"
        out.append({"name": "policy", "significant": significant, "text": (
            f"The updated policy follows {evaluation['pass_rate_after']:.1%} of the instructions in "
            f"{evaluation['prompts']} held-out prompts, {direction} from {evaluation['pass_rate_before']:.1%} "
            f"({_points(delta)}, 95% CI {_points(low)} to {_points(high)})"
            + ("." if significant else ": the interval includes no change."))})
        if evaluation.get("win_rate") is not None:
            low, high = evaluation["win_rate_ci"]
            significant = low is not None and low > 0.5
            out.append({"name": "win_rate", "significant": significant, "text": (
                f"The reward model prefers the updated policy's answer on {evaluation['win_rate']:.1%} of held-out "
                f"prompts (95% CI {low:.1%} to {high:.1%})"
                + ("." if significant else ": not distinguishable from a coin flip."))})
    search = stages.get("instructions", {}).get("result", {})
    check = search.get("heldout_check")
    if check:
        low, high = check["delta_ci"]
        significant = low is not None and low > 0
        out.append({"name": "instructions", "significant": significant, "text": (
            f"Under the instruction the search found, the updated policy follows {check['found']:.1%} of held-out "
            f"instructions against {check['start']:.1%} under its start ({_points(check['delta'])}, 95% CI "
            f"{_points(low)} to {_points(high)}, {check['prompts']} prompts)"
            + ("." if significant else ": the interval includes no change."))})
    elif "best_instruction" in search:
        out.append({"name": "instructions", "significant": False, "text": (
            "The instruction search kept its start instruction: no candidate beat it on the prompts kept to "
            "confirm the winner.")})
    return out
