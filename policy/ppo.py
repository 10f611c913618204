"""PPO with a value model (actor-critic) for language models, on accelerate: `train_ppo(prompts, PPOTrainingConfig())`.

TRL removed its PPOTrainer and value-head models (huggingface/trl#7020); this is a maintained one in the same style
(one config dataclass, one trainer), running on a CPU for tests and on GPUs under `accelerate launch`. Each update:

1. **Rollout.** The policy samples one answer per prompt (same chat formatting as `policy.generate`).
2. **Score.** The reward sources (rlhfkit reward models, ensembles, the IFEval verifier, callables; weighted sum)
   score each answer; an answer with no EOS can be penalised (`missing_eos_penalty`).
3. **Per-token rewards.** -kl_coef x (log pi - log pi_ref) on every token, plus the score on the last one. The
   reference is the base model with the LoRA adapters switched off (or a frozen copy without LoRA); the KL
   coefficient is fixed or adaptive.
4. **Advantages.** The critic (a separate model: the policy's backbone or a decoder reward model, with a fresh
   per-token value head) gives V; GAE(gamma, lambda) gives advantages (whitened) and returns.
5. **PPO epochs.** Over minibatches: clipped policy loss, clipped value loss, gradient accumulation and clipping.

Metrics per update (score, KL, entropy, clip fractions, value loss, explained variance, answer length) go to
`train_log.json` and `curves.png`. A checkpoint (models, optimisers, RNG, KL coefficient, log) is written every
`save_steps` updates, atomically; `resume` continues from the last one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from policy.config import PPOTrainingConfig
from policy.model import load_policy_tokenizer, load_weights, messages_of
from policy.ppo_core import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    explained_variance,
    gae,
    kl_penalised_rewards,
    masked_mean,
    whiten,
)
from policy.prompts import PromptItem
from policy.rewards import check_reward_sources, reward_functions, verifier_columns
from policy.training import peft_config, plot_curves, prepare_output, use_bf16, write_policy_card
from rlhfkit.core.atomic import atomic_dir, atomic_write_text
from rlhfkit.core.errors import InputError, TrainingDiverged
from rlhfkit.core.tracking import trackers
from rlhfkit.models.registry import resolve_model

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Rollout:
    input_ids: torch.Tensor  # [B, P + T] prompt (left-padded) + answer
    attention_mask: torch.Tensor  # [B, P + T], 0 on padding and after EOS
    prompt_length: int  # P
    mask: torch.Tensor  # [B, T] real answer tokens
    logprobs: torch.Tensor  # [B, T] under the policy that sampled
    ref_logprobs: torch.Tensor
    values: torch.Tensor  # [B, T]
    scores: torch.Tensor  # [B]
    texts: list[str]


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    # Left padding: positions count real tokens only, as generate() does.
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def _token_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int,
                    temperature: float, with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=_positions(attention_mask)).logits[:, prompt_length - 1:-1].float() / temperature
    logp = logits.log_softmax(-1)
    taken = logp.gather(-1, input_ids[:, prompt_length:, None])[..., 0]
    entropy = -(logp.exp() * logp).sum(-1) if with_entropy else None
    return taken, entropy


def _values(critic: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_length: int) -> torch.Tensor:
    # V(state before each answer token): the hidden state of the token that precedes it.
    out = critic(input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask))
    return out.logits[:, prompt_length - 1:-1, 0].float()


class PPOTrainer:
    """One PPO run; `train()` returns the summary. Build it with `train_ppo` unless you need the pieces."""

    def __init__(self, config: PPOTrainingConfig, prompts: Sequence[PromptItem],
                 extra_rewards: Sequence[Callable[..., Any]] = ()):
        from accelerate import Accelerator

        self.config, self.prompts = config, list(prompts)
        self.trackers = trackers(config.report_to)
        # The Accelerator comes first: it sets up the processes (from ACCELERATE_USE_CPU too) that the run folder's
        # check waits on.
        self.accelerator = Accelerator(gradient_accumulation_steps=config.gradient_accumulation_steps,
                                       mixed_precision="bf16" if use_bf16(config) else "no",
                                       log_with=self.trackers or None,
                                       project_dir=str(Path(config.output_dir) / "checkpoints"))
        self.out = prepare_output(config)
        self.rewards = reward_functions(config, extra_rewards, device=self.accelerator.device)
        torch.manual_seed(config.seed)
        self.tokenizer = load_policy_tokenizer(config.model, config.chat_template, padding_side="left")
        policy = load_weights(config.model)  # an adapter folder comes merged
        critic = self._critic(policy)
        critic.config.pad_token_id = policy.config.pad_token_id = self.tokenizer.pad_token_id
        self.ref_policy = None
        if config.lora:
            from peft import LoraConfig, TaskType, get_peft_model

            policy = get_peft_model(policy, peft_config(config))
            critic = get_peft_model(critic, LoraConfig(
                task_type=TaskType.TOKEN_CLS, r=config.lora_r, lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout, target_modules=config.lora_target_modules or "all-linear",
                exclude_modules=["score", "classifier"]))  # the value head is trained in full (modules_to_save)
        else:
            import copy

            self.ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
        for model in (policy, critic):  # PPO's ratio must be 1 before an update: no dropout noise (as TRL's PPO)
            for module in model.modules():
                if isinstance(module, torch.nn.Dropout):
                    module.p = 0.0
        policy_opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=config.learning_rate)
        critic_opt = torch.optim.AdamW([p for p in critic.parameters() if p.requires_grad],
                                       lr=config.critic_learning_rate or config.learning_rate)
        self.policy, self.critic, self.policy_opt, self.critic_opt = self.accelerator.prepare(
            policy, critic, policy_opt, critic_opt)
        if self.ref_policy is not None:
            self.ref_policy.to(self.accelerator.device)
        self.kl = (AdaptiveKLController(config.beta, config.kl_target, config.kl_horizon) if config.adaptive_kl
                   else FixedKLController(config.beta))
        self.history: list[dict[str, Any]] = []
        self.step = 0
        stop = getattr(getattr(policy, "generation_config", None), "eos_token_id", None)
        self.eos_ids = {self.tokenizer.eos_token_id, *([stop] if isinstance(stop, int) else stop or [])}

    def _critic(self, policy: Any) -> Any:
        """The value model: the policy's weights (or `critic_model`'s) under a per-token value head. A critic must
        read the policy's tokens left to right, so it must be a decoder of the same family and vocabulary."""
        import tempfile

        from transformers import AutoConfig, AutoModelForTokenClassification

        if not self.config.critic_model:
            source = resolve_model(self.config.model)
            if not (Path(source) / "adapter_config.json").is_file():
                return AutoModelForTokenClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
            with tempfile.TemporaryDirectory() as tmp:  # an adapter folder: the merged weights, a new value head
                policy.save_pretrained(tmp)
                return AutoModelForTokenClassification.from_pretrained(tmp, num_labels=1, dtype=torch.float32)
        path = resolve_model(self.config.critic_model)
        if (Path(path) / "adapter_config.json").is_file() or not (Path(path) / "config.json").is_file():
            raise InputError(f"critic_model {self.config.critic_model}: give a full model folder (a LoRA or "
                             "ensemble reward-model folder cannot start a critic)")
        critic_config = AutoConfig.from_pretrained(path)
        if critic_config.model_type != policy.config.model_type or \
                critic_config.vocab_size != policy.config.vocab_size:
            raise InputError(f"critic_model {self.config.critic_model} is a {critic_config.model_type} with "
                             f"{critic_config.vocab_size} tokens, but the policy is a {policy.config.model_type} "
                             f"with {policy.config.vocab_size}: the critic must read the policy's tokens (use a "
                             "reward model trained on the policy's backbone, or leave critic_model unset)")
        # A reward model's score head (num_labels=1) is kept as the starting value head.
        return AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)

    # -- prompts: a seeded order, sharded by process, so a resumed run takes the same batches -------------------
    def batch(self, step: int) -> list[PromptItem]:
        size = self.config.per_device_train_batch_size
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        per_pass = max(1, len(self.prompts) // (size * world))
        order = list(range(len(self.prompts)))
        random.Random(self.config.seed + step // per_pass).shuffle(order)
        start = (step % per_pass) * size * world + rank * size
        return [self.prompts[order[(start + i) % len(order)]] for i in range(size)]

    # -- 1-4: rollout, scores, old log-probs, values -------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, items: list[PromptItem]) -> Rollout:
        config, tokenizer, device = self.config, self.tokenizer, self.accelerator.device
        messages = [messages_of(item.prompt, config.system_prompt) for item in items]
        encoded = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True) for m in messages]
        ids = [list(e["input_ids"] if hasattr(e, "keys") else e) for e in encoded]
        prompt = tokenizer.pad({"input_ids": ids}, return_tensors="pt", padding=True).to(device)
        policy = self.accelerator.unwrap_model(self.policy)
        policy.eval()
        output = policy.generate(**prompt, do_sample=True, temperature=config.temperature, top_p=config.top_p,
                                 top_k=0, max_new_tokens=config.max_completion_length,
                                 pad_token_id=tokenizer.pad_token_id)
        prompt_length = prompt["input_ids"].shape[1]
        answer = output[:, prompt_length:]
        is_eos = torch.zeros_like(answer, dtype=torch.bool)
        for eos in self.eos_ids:
            is_eos |= answer == eos
        ended = is_eos.any(dim=1)
        first_eos = torch.where(ended, is_eos.float().argmax(dim=1), torch.full_like(ended, answer.shape[1],
                                                                                    dtype=torch.long))
        mask = (torch.arange(answer.shape[1], device=device)[None, :] <= first_eos[:, None]).long()
        answer = answer.masked_fill(mask == 0, tokenizer.pad_token_id)
        texts = [tokenizer.decode(row[: int(n)], skip_special_tokens=True).strip()
                 for row, n in zip(answer.tolist(), mask.sum(dim=1).tolist())]
        scores = torch.tensor(self.score(items, messages, texts), dtype=torch.float32, device=device)
        if config.missing_eos_penalty:
            scores = scores - config.missing_eos_penalty * (~ended).float()
        input_ids = torch.cat([prompt["input_ids"], answer], dim=1)
        attention = torch.cat([prompt["attention_mask"], mask], dim=1)
        logprobs, _ = _token_logprobs(policy, input_ids, attention, prompt_length, config.temperature)
        if self.ref_policy is not None:
            ref, _ = _token_logprobs(self.ref_policy, input_ids, attention, prompt_length, config.temperature)
        else:
            with policy.disable_adapter():
                ref, _ = _token_logprobs(policy, input_ids, attention, prompt_length, config.temperature)
        critic = self.accelerator.unwrap_model(self.critic)
        critic.eval()
        values = _values(critic, input_ids, attention, prompt_length)
        return Rollout(input_ids, attention, prompt_length, mask.float(), logprobs, ref, values, scores, texts)

    def score(self, items: list[PromptItem], messages: list[Any], texts: list[str]) -> list[float]:
        completions = [[{"role": "assistant", "content": text}] for text in texts]
        columns: dict[str, list[Any]] = {}
        for item in items:
            for key, value in verifier_columns(item.metadata).items():
                columns.setdefault(key, []).append(value)
        weights = self.config.reward_weights or [1.0] * len(self.rewards)
        total = [0.0] * len(items)
        for weight, function in zip(weights, self.rewards):
            for i, value in enumerate(function(messages, completions, **columns)):
                if value is not None and not math.isnan(value):
                    total[i] += weight * float(value)
        return total

    # -- 5: PPO epochs -------------------------------------------------------------------------------------------
    def optimise(self, batch: Rollout, advantages: torch.Tensor, returns: torch.Tensor) -> dict[str, float]:
        config, stats = self.config, {"policy_loss": [], "value_loss": [], "clipfrac": [], "value_clipfrac": [],
                                      "entropy": [], "approx_kl": []}
        self.policy.train()
        self.critic.train()
        size = batch.input_ids.shape[0]
        generator = torch.Generator().manual_seed(config.seed + self.step)
        for _ in range(config.ppo_epochs):
            order = torch.randperm(size, generator=generator).to(batch.input_ids.device)
            for start in range(0, size, config.mini_batch_size):
                idx = order[start:start + config.mini_batch_size]
                ids, attn, mask = batch.input_ids[idx], batch.attention_mask[idx], batch.mask[idx]
                with self.accelerator.accumulate(self.policy, self.critic):
                    logprobs, entropy = _token_logprobs(self.policy, ids, attn, batch.prompt_length,
                                                        config.temperature, with_entropy=True)
                    values = _values(self.critic, ids, attn, batch.prompt_length)
                    policy_loss, clipfrac = clipped_policy_loss(logprobs, batch.logprobs[idx], advantages[idx], mask,
                                                                config.clip_range)
                    value_loss, value_clipfrac = clipped_value_loss(values, batch.values[idx], returns[idx], mask,
                                                                    config.clip_range_value)
                    self.accelerator.backward(policy_loss + value_loss)  # disjoint parameters: one backward
                    if self.accelerator.sync_gradients:
                        self.accelerator.clip_grad_norm_(self.policy.parameters(), config.max_grad_norm)
                        self.accelerator.clip_grad_norm_(self.critic.parameters(), config.max_grad_norm)
                    self.policy_opt.step()
                    self.critic_opt.step()
                    self.policy_opt.zero_grad()
                    self.critic_opt.zero_grad()
                stats["policy_loss"].append(policy_loss.item())
                stats["value_loss"].append(value_loss.item())
                stats["clipfrac"].append(clipfrac.item())
                stats["value_clipfrac"].append(value_clipfrac.item())
                stats["entropy"].append(masked_mean(entropy.detach(), mask).item())
                stats["approx_kl"].append(masked_mean(0.5 * (logprobs.detach() - batch.logprobs[idx]) ** 2,
                                                      mask).item())
        return {key: sum(values) / len(values) for key, values in stats.items()}

    def update(self) -> dict[str, float]:
        """One PPO update: rollout, advantages, optimisation; returns its metrics (averaged over processes)."""
        config = self.config
        batch = self.rollout(self.batch(self.step))
        rewards, kl = kl_penalised_rewards(batch.scores, batch.logprobs, batch.ref_logprobs, batch.mask,
                                           self.kl.value)
        advantages, returns = gae(rewards, batch.values, batch.mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = whiten(advantages, batch.mask)
        metrics = self.optimise(batch, advantages, returns)
        kl_per_answer = kl.sum(dim=1)
        local = {"score": batch.scores.mean().item(), "kl": kl_per_answer.mean().item(),
                 "reward": (batch.scores - self.kl.value * kl_per_answer).mean().item(),
                 "answer_length": batch.mask.sum(dim=1).mean().item(),
                 "explained_variance": explained_variance(batch.values, returns, batch.mask), **metrics}
        gathered = self.accelerator.gather(torch.tensor([local[k] for k in sorted(local)],
                                                        device=self.accelerator.device)[None])
        # A NaN loss on any process must show (mean); explained variance is NaN when returns do not vary (nanmean).
        merged = {key: (gathered[:, i].nanmean() if key == "explained_variance" else gathered[:, i].mean()).item()
                  for i, key in enumerate(sorted(local))}
        self.kl.update(merged["kl"], config.per_device_train_batch_size * self.accelerator.num_processes)
        self.step += 1
        entry = {"step": self.step, **merged, "kl_coef": self.kl.value, "example": batch.texts[0][:200]}
        self.history.append(entry)
        return entry

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def _checkpoints(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> None:
        target = self._checkpoints() / f"step-{self.step}"
        tmp = self._checkpoints() / f".step-{self.step}.tmp"
        self.accelerator.save_state(str(tmp))
        self.accelerator.wait_for_everyone()  # every process has written its part (RNG state) before the rename
        if self.accelerator.is_main_process:
            atomic_write_text(tmp / "rlhfkit_ppo_state.json", json.dumps(
                {"step": self.step, "kl_coef": self.kl.value, "history": self.history}))
            shutil.rmtree(target, ignore_errors=True)
            tmp.replace(target)  # complete checkpoints only: a crash mid-save leaves a .tmp folder, never step-N
            for old in sorted(self._checkpoints().glob("step-*"), key=lambda p: int(p.name[5:]))[:-2]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def load_last_checkpoint(self) -> bool:
        found = sorted(self._checkpoints().glob("step-*"), key=lambda p: int(p.name[5:])) \
            if self._checkpoints().is_dir() else []
        if not found:
            return False
        self.accelerator.load_state(str(found[-1]))
        state = json.loads((found[-1] / "rlhfkit_ppo_state.json").read_text())
        self.step, self.kl.value, self.history = state["step"], state["kl_coef"], state["history"]
        log.info("resuming from %s (update %d)", found[-1], self.step)
        return True

    def save_final(self) -> None:
        if self.accelerator.is_main_process:
            with atomic_dir(self.out / "model") as tmp:
                self.accelerator.unwrap_model(self.policy).save_pretrained(tmp)
                self.tokenizer.save_pretrained(tmp)
                atomic_write_text(tmp / "rlhfkit_policy.json", json.dumps(
                    {"method": "ppo", "base_model": self.config.model, "lora": self.config.lora,
                     "system_prompt": self.config.system_prompt}, indent=1))
                final = {k: v for k, v in self.history[-1].items() if k != "example"} if self.history else {}
                write_policy_card(tmp, self.config, "ppo", final, self.out / "model")
            with atomic_dir(self.out / "critic") as tmp:
                self.accelerator.unwrap_model(self.critic).save_pretrained(tmp)
        self.accelerator.wait_for_everyone()

    def train(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        config = self.config
        if config.resume:
            self.load_last_checkpoint()
        started, first_step = time.perf_counter(), self.step
        if self.trackers:
            self.accelerator.init_trackers("rlhfkit-ppo", config={k: v for k, v in dataclasses.asdict(config).items()
                                                                 if isinstance(v, int | float | str | bool)})
        with tqdm(total=config.updates, initial=self.step, desc="PPO", unit="update",
                  disable=not self.accelerator.is_main_process) as bar:
            while self.step < config.updates:
                entry = self.update()
                if not math.isfinite(entry["policy_loss"]) or not math.isfinite(entry["value_loss"]):
                    raise TrainingDiverged(f"the PPO loss became non-finite at update {self.step}: lower the "
                                           "learning rate, or check the reward for NaN")
                bar.set_postfix(score=f"{entry['score']:.3f}", kl=f"{entry['kl']:.3f}")
                if self.trackers and self.step % config.logging_steps == 0:
                    self.accelerator.log({k: v for k, v in entry.items() if k not in ("step", "example")},
                                         step=self.step)
                bar.update(1)
                if self.step % config.logging_steps == 0:
                    log.info("update %d: score %.4f, kl %.4f, value loss %.4f", self.step, entry["score"],
                             entry["kl"], entry["value_loss"])
                if self.step % config.save_steps == 0 or self.step == config.updates:
                    self.save_checkpoint()
        runtime = time.perf_counter() - started
        if self.trackers:
            self.accelerator.end_training()
        self.save_final()
        summary = {"method": "ppo", "model": config.model, "final_model": str(self.out / "model"),
                   "critic": str(self.out / "critic"), "lora": config.lora, "updates": self.step,
                   "prompts": len(self.prompts), "train_runtime": runtime,
                   "seconds_per_update": runtime / max(1, self.step - first_step),
                   "final": {k: v for k, v in self.history[-1].items() if k != "example"}}
        if self.accelerator.is_main_process:
            atomic_write_text(self.out / "train_log.json", json.dumps(self.history, indent=1))
            plot_curves(self.history, ["score", "kl", "reward", "value_loss", "explained_variance", "clipfrac",
                                       "entropy", "answer_length", "kl_coef"], self.out / "curves.png",
                        f"ppo: {config.model}")
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1, default=str))
        return summary


def train_ppo(prompts: Sequence[PromptItem], config: PPOTrainingConfig | None = None,
              extra_rewards: Sequence[Callable[..., Any]] = ()) -> dict[str, Any]:
    """Update the policy with PPO on `prompts`; returns the run summary (also in `<output_dir>/summary.json`)."""
    config = config or PPOTrainingConfig()
    config.validate()
    if not prompts:
        raise InputError("no prompts to train on")
    check_reward_sources(config, extra_rewards)
    return PPOTrainer(planned(config, len(prompts)), prompts, extra_rewards).train()


def planned(config: PPOTrainingConfig, prompts: int) -> PPOTrainingConfig:
    """`config` with its `updates` and `mini_batch_size` decided for `prompts` prompts (see those fields)."""
    updates = config.updates or (config.max_steps if config.max_steps > 0 else
                                 max(1, round(config.num_train_epochs * prompts / config.per_device_train_batch_size)))
    mini_batch = config.mini_batch_size or max(1, config.per_device_train_batch_size // 2)
    return dataclasses.replace(config, updates=updates, mini_batch_size=mini_batch)
