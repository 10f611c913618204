"""The machine annotators by name: `make_annotator("verifier" | "judge" | "reward", ...)`, the one factory the
command line (`rlhfkit annotate label`, `--preannotate`) and the pipeline's label stage share."""

from __future__ import annotations

from annotation.base import Annotator
from annotation.verifier import MODES, VerifierAnnotator
from rlhfkit.core.errors import InputError

ANNOTATORS = ("verifier", "judge", "reward")
"""The machine annotators' names (people label through Label Studio)."""
DEFAULT_JUDGE_LM = "smollm2-135m-instruct"
"""The LLM judge's model when none is named: the bundled SmolLM2."""


def make_annotator(name: str, *, mode: str = "strict", judge_lm: str = DEFAULT_JUDGE_LM,
                   reward_model: str | None = None) -> Annotator:
    """The annotator called `name`. `mode`: the verifier's ('strict' or 'loose'); `judge_lm`: the judge's LM (a
    bundled name, local:PATH or a LiteLLM model string); `reward_model`: the reward annotator's model folder."""
    if name not in ANNOTATORS:
        raise InputError(f"unknown annotator {name!r}; available: {', '.join(ANNOTATORS)}")
    if name == "reward":
        if not reward_model:
            raise InputError("annotator 'reward' needs a reward model folder (a model saved by `rlhfkit reward "
                             "train`)")
        from annotation.reward_annotator import RewardAnnotator  # imports torch and transformers: only when asked

        return RewardAnnotator(reward_model)
    if name == "judge":
        from annotation.judge import JudgeAnnotator  # imports dspy: only when asked for

        return JudgeAnnotator(judge_lm)
    if mode not in MODES:
        raise InputError(f"the verifier's mode must be 'strict' or 'loose', not {mode!r}")
    return VerifierAnnotator(mode=mode)  # type: ignore[arg-type]
