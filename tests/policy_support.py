"""Tiny policies on the real SmolLM2 tokenizer (chat template included) and easy preferences they can learn."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import torch

from preference.schema import Label, PreferenceRecord, Strength
from tests.tiny_models import save_tiny, tiny_causal_lm

GOOD = "yes, gladly."
BAD = "NO WAY!!"


def tiny_policy(folder: Path, seed: int = 0, **overrides) -> str:
    sizes = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, **overrides}
    model, tokenizer = tiny_causal_lm(seed=seed, **sizes)
    return str(save_tiny(model, tokenizer, folder))


def easy_preferences(n: int, seed: int = 0, strength: Strength | None = Strength.CLEAR) -> list[PreferenceRecord]:
    """The polite answer always wins; positions alternate at random."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        a_good = rng.random() < 0.5
        records.append(PreferenceRecord(
            prompt=f"Will you help me with task {i}?", response_a=GOOD if a_good else BAD,
            response_b=BAD if a_good else GOOD, label=Label.A if a_good else Label.B, strength=strength,
            annotator="rule", source="test"))
    return records


def answer_logprob(model, tokenizer, prompt: str, answer: str) -> float:
    """Sum of the answer tokens' log-probabilities after the chat-formatted prompt."""
    messages = [{"role": "user", "content": prompt}]
    prefix = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                         tokenize=True)["input_ids"]
    ids = torch.tensor([full])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].log_softmax(-1)
    targets = ids[0, 1:]
    picked = logits.gather(1, targets[:, None])[:, 0]
    return float(picked[len(prefix) - 1:].sum())


def torchrun_rlhfkit(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`rlhfkit ARGS` on two CPU processes (gloo); accelerate detects the CPU run from ACCELERATE_USE_CPU."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "rlhfkit", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def tiny_dspy_lm(max_tokens: int, seed: int = 0, name: str = "tiny"):
    """A DSPy LM answered by a tiny random policy through rlhfkit's engine (real tokenizer and chat template)."""
    import dspy

    from rlhfkit.lm.local_lm import TransformersEngine

    model, tokenizer = tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2, seed=seed)
    engine = TransformersEngine(name, max_new_tokens=max_tokens)
    engine._loaded = (model, tokenizer)  # the engine's own load would resolve a name; the tiny model is in memory
    return dspy.LM(f"local/{name}", engine=engine, cache=False, max_tokens=max_tokens)


def tiny_reward_model(folder: Path, seed: int = 3, max_length: int = 128):
    """A tiny (random) MiniLM-tokenizer reward model, saved and loaded back as users load one."""
    from reward.meta import RewardMeta
    from reward.model import RewardModel
    from tests.tiny_models import tiny_encoder

    model, tokenizer = tiny_encoder(seed=seed)
    saved = RewardModel(model, tokenizer, RewardMeta(backbone="minilm-l6", max_length=max_length)).save(folder)
    return RewardModel.load(saved)
