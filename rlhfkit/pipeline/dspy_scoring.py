"""The pipeline's DSPy stage: the starting and the updated policy answer held-out prompts through a DSPy program, and
`dspy.Evaluate` scores the answers with rlhfkit's metric (IFEval verifier + reward model); `RewardScore`, the reward
model as a DSPy module, gives each policy's mean reward apart.

Both policies run as DSPy LMs (served by vLLM when it is installed, else rlhfkit's in-process engine) with
`PlainAdapter` (a 135M model cannot keep DSPy's
field markers), so the same program and metric would score any LiteLLM model a user configures instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dspy

from reward.dspy_metrics import InstructionFollowingMetric, RewardScore
from rlhfkit.lm.local_lm import is_served, lm_and_adapter

if TYPE_CHECKING:
    from rlhfkit.pipeline.stages import Context


class Respond(dspy.Signature):
    """Answer the request, following every instruction in it."""

    prompt: str = dspy.InputField()
    response: str = dspy.OutputField()


class PolicyProgram(dspy.Module):
    """The policy as a one-step DSPy program: prompt in, response out."""

    def __init__(self) -> None:
        super().__init__()
        self.respond = dspy.Predict(Respond)

    def forward(self, prompt: str) -> dspy.Prediction:
        return self.respond(prompt=prompt)


def score_policies(ctx: Context) -> dict[str, Any]:
    """Per policy ('before', 'after'): the metric's mean (0-1), the mean reward, and each answer's scores."""
    from policy.instructions.fitness import example_of

    spec = ctx.config.dspy
    items = [item for item in ctx.prompts("heldout") if item.verifiable][:spec.prompts]
    devset = [dspy.Example(**example_of(item)).with_inputs("prompt") for item in items]
    if not devset:
        return {"skipped": "no held-out prompt carries IFEval instructions (instruction_id_list + kwargs) for the "
                           "verifier half of the metric", "policies": {}}
    metric = InstructionFollowingMetric(reward_model=ctx.reward_model, reward_weight=1.0)
    scorer = RewardScore(ctx.reward_model)
    policies = {"before": ctx.config.policy.model, "after": ctx.updated_policy}
    out: dict[str, Any] = {"metric": "mean of (IFEval share followed + sigmoid(reward)) / 2, per answer",
                           "prompts": len(devset), "policies": {}}
    for name, model in policies.items():
        lm, adapter = lm_and_adapter(model if model.startswith("local:") else f"local:{model}",
                                     max_new_tokens=spec.max_new_tokens, backend=ctx.config.generate.backend)
        # A served LM batches concurrent requests; the in-process engine answers one at a time anyway.
        threads = 8 if is_served(lm) else 1
        with dspy.context(lm=lm, adapter=adapter):
            result = dspy.Evaluate(devset=devset, metric=metric, num_threads=threads, display_progress=True,
                                   provide_traceback=False)(PolicyProgram())
        rows = []
        for example, prediction, score in result.results:
            response = getattr(prediction, "response", "") or ""
            rows.append({"prompt": example.prompt, "response": response, "score": float(score),
                         "reward": scorer(prompt=example.prompt, response=response).score})
        out["policies"][name] = {"model": model, "score": result.score / 100,
                                 "mean_reward": sum(r["reward"] for r in rows) / max(1, len(rows)), "answers": rows}
    return out
