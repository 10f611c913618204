"""The run's results in plain sentences, each with its interval and whether the interval excludes chance.

Read from the stage results in the manifest, so `metrics.json`, the report and the end of `rlhfkit run` say the same.
"""

from __future__ import annotations

from typing import Any


def _points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def _line(name: str, low: float | None, above: float, text: str, ci: str, verdict: str, null: str
          ) -> dict[str, Any]:
    """One headline: significant when the interval's lower end is above `above`; a missing interval is said."""
    significant = low is not None and low > above
    interval = f" (95% CI {ci})" if low is not None else " (no interval: too few pairs)"
    return {"name": name, "significant": significant, "text": text + interval + (verdict if significant else null)}


def headlines(stages: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"name", "text", "significant"}] for the reward model, the policy update and the instruction search."""
    out = []
    reward = stages.get("reward", {}).get("result", {})
    if reward.get("accuracy") is not None:
        low, high = reward["accuracy_ci"]
        out.append(_line("reward", low, 0.5,
                         f"The reward model ranks {reward['accuracy']:.1%} of {reward['decisive_test_pairs']} "
                         "held-out decisive pairs correctly",
                         low is not None and f"{low:.1%} to {high:.1%}", ": better than chance.",
                         ": not distinguishable from chance (50%)."))
    evaluation = stages.get("evaluate", {}).get("result", {})
    if evaluation.get("pass_rate_delta") is not None:
        low, high = evaluation["pass_rate_delta_ci"]
        delta = evaluation["pass_rate_delta"]
        direction = "up" if delta > 0 else "down" if delta < 0 else "unchanged"
        out.append(_line("policy", low, 0,
                         f"The updated policy follows {evaluation['pass_rate_after']:.1%} of the instructions in "
                         f"{evaluation['prompts']} held-out prompts, {direction} from "
                         f"{evaluation['pass_rate_before']:.1%} ({_points(delta)})",
                         low is not None and f"{_points(low)} to {_points(high)}", ".",
                         ": the interval includes no change."))
        if evaluation.get("win_rate") is not None:
            low, high = evaluation["win_rate_ci"]
            out.append(_line("win_rate", low, 0.5,
                             f"The reward model prefers the updated policy's answer on {evaluation['win_rate']:.1%} "
                             "of held-out prompts", low is not None and f"{low:.1%} to {high:.1%}", ".",
                             ": not distinguishable from a coin flip."))
    search = stages.get("instructions", {}).get("result", {})
    check = search.get("heldout_check")
    if check:
        low, high = check["delta_ci"]
        out.append(_line("instructions", low, 0,
                         f"Under the instruction the search found, the updated policy follows {check['found']:.1%} "
                         f"of {check['prompts']} held-out prompts' instructions against {check['start']:.1%} under "
                         f"its start ({_points(check['delta'])})",
                         low is not None and f"{_points(low)} to {_points(high)}", ".",
                         ": the interval includes no change."))
    elif "best_instruction" in search and search["best_instruction"] == search.get("start_instruction"):
        out.append({"name": "instructions", "significant": False, "text": (
            "The instruction search kept its start instruction: no candidate beat it on the prompts kept to "
            "confirm the winner.")})
    return out
