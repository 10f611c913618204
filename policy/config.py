"""The settings of every policy method, one config dataclass each (as TRL keeps `DPOConfig` beside `DPOTrainer`),
every field documented where it is defined: `PolicyTrainingConfig` (what all share), `SFTTrainingConfig`,
`DPOTrainingConfig`, `RLTrainingConfig` (GRPO, RLOO) and `PPOTrainingConfig`; and the settings of sampling
(`GenerationConfig`), evaluation (`PolicyEvalConfig`) and instruction search (`EvolutionConfig` for the
evolutionary optimizer, `InstructionEvolutionConfig` for the DSPy Teleprompter).

This module imports nothing heavy, so the command line builds its options from these classes without loading torch;
the work lives in `policy.sft`, `policy.dpo`, `policy.rl`, `policy.ppo`, `policy.generate` and `policy.evaluate`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from rlhfkit.core.checks import require
from rlhfkit.core.errors import InputError
from rlhfkit.core.stats import CI_LEVEL
from rlhfkit.core.tracking import no_trackers, trackers


@dataclasses.dataclass
class PolicyTrainingConfig:
    # -- model ---------------------------------------------------------------------------------------------------
    model: str = "smollm2-135m-instruct"
    """Policy to update: bundled short name, local folder, `.gguf` file or cached Hugging Face id."""
    output_dir: str = "runs/policy"
    """Run folder: `model/` (the final policy, or its LoRA adapter), `checkpoints/`, `curves.png`,
    `train_log.json`, `config.json`, `summary.json`."""
    chat_template: str | None = None
    """A chat template (Jinja string or file) for a tokenizer that has none."""
    system_prompt: str | None = None
    """System instruction put before every prompt, as in generation (keep them the same)."""

    # -- LoRA ----------------------------------------------------------------------------------------------------
    lora: bool = True
    """Train LoRA adapters (default: a CPU can afford them); False trains every weight."""
    lora_r: int = 16
    """LoRA rank: the adapters' inner dimension."""
    lora_alpha: int = 32
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA adapters' input."""
    lora_target_modules: list[str] | None = None
    """Modules to adapt; None: every linear layer of the transformer blocks (`all-linear`)."""

    # -- optimisation --------------------------------------------------------------------------------------------
    learning_rate: float = 5e-5
    """Peak learning rate (linear decay after warm-up)."""
    num_train_epochs: float = 1.0
    """Passes over the training data."""
    max_steps: int = -1
    """Stop after this many optimiser steps (overrides epochs when positive)."""
    per_device_train_batch_size: int = 4
    """Training examples per optimiser step, per device (times gradient_accumulation_steps)."""
    gradient_accumulation_steps: int = 1
    """Batches whose gradients are summed before each optimiser step."""
    warmup_ratio: float = 0.1
    """Share of the steps over which the learning rate rises linearly from 0."""
    max_grad_norm: float = 1.0
    """Clip the gradient's norm to this before each step."""
    seed: int = 0
    """Seed of data order, initialisation and sampling."""
    bf16: bool | None = None
    """bfloat16 mixed precision; None: on where a CUDA GPU supports it, off on CPU."""
    gradient_checkpointing: bool = False
    """Recompute activations to save memory (GPUs with long sequences); slower, so off by default."""

    # -- checkpoints and logging ---------------------------------------------------------------------------------
    save_steps: int = 50
    """Checkpoint every this many optimiser steps (the last two are kept)."""
    logging_steps: int = 5
    """Log (and plot) the losses every this many optimiser steps."""
    resume: bool = False
    """Continue an interrupted run from the last checkpoint in output_dir."""
    report_to: list[str] = dataclasses.field(default_factory=no_trackers)
    """Experiment trackers besides train_log.json and curves.png: none, or any of tensorboard, trackio, wandb
    (offline unless WANDB_MODE says otherwise), mlflow (see `rlhfkit.core.tracking`). The package must be
    installed."""

    def validate(self) -> None:
        """Raise ValueError naming the bad field (before any work starts)."""
        checks = [
            (self.learning_rate > 0, "learning_rate must be positive"),
            (self.num_train_epochs > 0 or self.max_steps > 0, "num_train_epochs or max_steps must be positive"),
            (self.per_device_train_batch_size >= 1, "per_device_train_batch_size must be at least 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be at least 1"),
            (self.lora_r >= 1, "lora_r must be at least 1"),
            (self.save_steps >= 1 and self.logging_steps >= 1, "save_steps and logging_steps must be at least 1"),
        ]
        trackers(self.report_to)  # an unknown or uninstalled tracker fails here, before any work
        require(checks, type(self).__name__)


@dataclasses.dataclass
class RewardSources:
    """The reward part of an online RL config (GRPO, RLOO, PPO)."""

    reward_models: list[str] = dataclasses.field(default_factory=list)
    """Folders of rlhfkit reward models (an ensemble folder scores with its members' mean)."""
    verifier: Literal["strict", "loose"] | None = None
    """Add IFEval verification as a reward (share of instructions followed) in this mode; None: no verifier."""
    reward_weights: list[float] | None = None
    """One weight per reward source, in the order: reward models, verifier, extra callables; None: all 1."""


@dataclasses.dataclass
class SFTTrainingConfig(PolicyTrainingConfig):
    output_dir: str = "runs/sft"
    learning_rate: float = 1e-4
    max_length: int = 1024
    """Tokens per example; longer ones are cut at the end."""
    completion_only_loss: bool = True
    """Learn only the answer's tokens (the prompt is context, not a target)."""

    def validate(self) -> None:
        super().validate()
        if self.max_length < 16:
            raise InputError("SFTTrainingConfig: max_length must be at least 16")


# TRL 1.16's DPO losses (DPOConfig.loss_type); see TRL's documentation for each.
LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclasses.dataclass
class DPOTrainingConfig(PolicyTrainingConfig):
    output_dir: str = "runs/dpo"
    # -- DPO -----------------------------------------------------------------------------------------------------
    beta: float = 0.1
    """How far the policy may move from the reference: higher keeps it closer (IPO: the regulariser tau)."""
    loss_type: list[str] = dataclasses.field(default_factory=lambda: ["sigmoid"])
    """One or more of TRL's DPO losses (`LOSS_TYPES`); several are summed with `loss_weights` (e.g. MPO)."""
    loss_weights: list[float] | None = None
    """One weight per loss_type when several are summed; None: all 1."""
    label_smoothing: float = 0.0
    """Robust DPO / EXO: the assumed share of flipped labels (robust: in [0, 0.5))."""
    max_length: int = 1024
    """Tokens per prompt + answer; longer sequences are cut at the end (TRL's keep_start)."""
    precompute_ref_log_probs: bool = False
    """Compute the reference log-probs once before training (saves the reference forward pass every step)."""
    # -- data ----------------------------------------------------------------------------------------------------
    aggregate: Literal["majority", "unanimous", "weighted", "none"] = "majority"
    """How several judgments of a pair become one training pair (`none`: every judgment is a pair)."""
    ties: Literal["drop", "margin0"] = "drop"
    """Ties: dropped, or trained in both orders (pulls the two answers' log-ratios together)."""
    both_bad: Literal["drop", "tie"] = "drop"
    """Pairs judged both bad: dropped, or handled as ties."""
    min_agreement: float = 0.0
    """Drop pairs whose consensus agreement is below this share."""
    strength_weighting: bool = True
    """Draw pairs in proportion to their strength (slight 0.5, clear 1, strong 2); False: uniformly."""
    pairs_per_prompt: int | None = None
    """Train on at most this many pairs per prompt, the strongest first (ties broken at random by `seed`): with
    many answers per prompt, one pair each spreads a short training budget over more prompts. None: every pair."""

    def validate(self) -> None:
        super().validate()
        unknown = [name for name in self.loss_type if name not in LOSS_TYPES]
        checks = [
            (self.beta > 0, "beta must be positive"),
            (bool(self.loss_type) and not unknown, f"loss_type must be among {', '.join(LOSS_TYPES)}"
                                                   + (f" (unknown: {', '.join(unknown)})" if unknown else "")),
            (self.loss_weights is None or len(self.loss_weights) == len(self.loss_type),
             "loss_weights needs one weight per loss_type"),
            (0 <= self.label_smoothing < 0.5, "label_smoothing must be in [0, 0.5)"),
            ("exo_pair" not in self.loss_type or self.label_smoothing > 0,
             "loss_type exo_pair needs label_smoothing > 0 (the EXO paper suggests 1e-3)"),
            (self.max_length >= 16, "max_length must be at least 16"),
            (self.ties in ("drop", "margin0"), "ties must be 'drop' or 'margin0'"),
            (self.both_bad in ("drop", "tie"), "both_bad must be 'drop' or 'tie'"),
            (self.pairs_per_prompt is None or self.pairs_per_prompt >= 1, "pairs_per_prompt must be at least 1"),
        ]
        require(checks, "DPOTrainingConfig")


ALGOS = ("grpo", "rloo")


@dataclasses.dataclass
class RLTrainingConfig(PolicyTrainingConfig, RewardSources):
    output_dir: str = "runs/rl"
    learning_rate: float = 1e-5
    # -- algorithm -----------------------------------------------------------------------------------------------
    algo: Literal["grpo", "rloo"] = "grpo"
    """`grpo` (group-normalised advantages, TRL's GRPOTrainer) or `rloo` (leave-one-out baseline, RLOOTrainer).
    PPO with a value model is `policy.ppo`."""
    num_generations: int = 4
    """Answers sampled per prompt (the group). per_device_train_batch_size x gradient_accumulation_steps must be a
    multiple of it."""
    max_completion_length: int = 128
    """Answer length limit in tokens."""
    temperature: float = 1.0
    """Sampling temperature of the rollouts."""
    beta: float = 0.04
    """KL penalty to the reference policy (0 switches it off and skips the reference forward pass)."""
    scale_rewards: bool = True
    """Divide advantages by the group's reward std (GRPO) / normalise advantages (RLOO)."""
    use_vllm: bool = False
    """Generate rollouts with vLLM (GPU; TRL's colocate mode)."""

    def validate(self) -> None:
        super().validate()
        group = self.per_device_train_batch_size * self.gradient_accumulation_steps
        checks = [
            (self.algo in ALGOS, f"algo must be one of {', '.join(ALGOS)} (PPO: rlhfkit policy rl --algo ppo)"),
            (self.num_generations >= 2, "num_generations must be at least 2 (advantages compare answers in a group)"),
            (group % self.num_generations == 0,
             f"per_device_train_batch_size x gradient_accumulation_steps ({group}) must be a multiple of "
             f"num_generations ({self.num_generations})"),
            (self.max_completion_length >= 1, "max_completion_length must be at least 1"),
            (self.temperature > 0, "temperature must be positive (rollouts are sampled)"),
            (self.beta >= 0, "beta must be 0 or positive"),
        ]
        require(checks, "RLTrainingConfig")


@dataclasses.dataclass
class PPOTrainingConfig(PolicyTrainingConfig, RewardSources):
    output_dir: str = "runs/ppo"
    learning_rate: float = 1e-5
    """Policy learning rate (constant). PPO counts `updates` (see there); it does not use warmup_ratio."""
    critic_learning_rate: float | None = None
    """Critic learning rate; None: the policy's."""
    critic_model: str | None = None
    """Where the critic starts: None = the policy's own weights with a new value head; or a decoder model folder
    (e.g. a reward model trained on SmolLM2) that uses the policy's tokenizer."""
    updates: int | None = None
    """PPO updates (rollout + optimisation rounds). None: `max_steps` when positive, else one update per
    `per_device_train_batch_size` prompts per epoch (`num_train_epochs`), rounded, at least 1."""
    per_device_train_batch_size: int = 8
    """The rollout: prompts answered (one answer each) per update, per process. The same name as GRPO's, which
    also counts answers per step."""
    mini_batch_size: int | None = None
    """Sequences per optimiser minibatch (per process); gradient_accumulation_steps minibatches make a step.
    None: half a rollout (at least 1)."""
    ppo_epochs: int = 2
    """Passes over each rollout."""
    max_completion_length: int = 64
    """Answer length limit of the rollouts, in tokens."""
    temperature: float = 1.0
    """Rollout sampling temperature (log-probs are computed at the same temperature)."""
    top_p: float = 1.0
    """Nucleus sampling threshold of the rollouts."""
    gamma: float = 1.0
    """Discount per token (1: the score counts fully for every token)."""
    lam: float = 0.95
    """GAE lambda: lower trusts the critic more."""
    clip_range: float = 0.2
    """PPO ratio clipping epsilon."""
    clip_range_value: float = 0.2
    """Value clipping around the rollout's values."""
    beta: float = 0.05
    """KL penalty coefficient to the reference policy, per token (the initial value when adaptive), as GRPO's
    beta."""
    adaptive_kl: bool = False
    """Adapt beta so the KL per answer tracks kl_target."""
    kl_target: float = 6.0
    """adaptive_kl: the KL per answer the controller aims at."""
    kl_horizon: int = 10_000
    """adaptive_kl: how many answers the controller takes to close the gap to kl_target."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0 and variance 1 within each rollout."""
    missing_eos_penalty: float | None = None
    """Subtract this from the score of answers cut at max_completion_length (no EOS)."""

    def validate(self) -> None:
        super().validate()
        checks = [
            (self.updates is None or self.updates >= 1, "updates must be at least 1"),
            (self.per_device_train_batch_size >= 1, "per_device_train_batch_size must be at least 1"),
            (self.mini_batch_size is None or 1 <= self.mini_batch_size <= self.per_device_train_batch_size,
             "mini_batch_size must be between 1 and per_device_train_batch_size (the rollout)"),
            (self.ppo_epochs >= 1, "ppo_epochs must be at least 1"),
            (self.max_completion_length >= 1, "max_completion_length must be at least 1"),
            (self.temperature > 0, "temperature must be positive (rollouts are sampled)"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (0 <= self.gamma <= 1 and 0 <= self.lam <= 1, "gamma and lam must be in [0, 1]"),
            (self.clip_range > 0 and self.clip_range_value > 0, "clip ranges must be positive"),
            (self.beta >= 0, "beta must be 0 or positive"),
            (self.kl_target > 0 and self.kl_horizon >= 1, "kl_target and kl_horizon must be positive"),
        ]
        require(checks, "PPOTrainingConfig")


# -- generation and evaluation -------------------------------------------------------------------------------------
BACKENDS = ("auto", "transformers", "vllm", "vllm-server")
DEFAULT_BATCH = {"transformers": 8, "vllm": 64, "vllm-server": 64}


@dataclasses.dataclass
class GenerationConfig:
    model: str = "smollm2-135m-instruct"
    """Policy: bundled short name, local folder (a LoRA adapter folder loads merged), `.gguf` file or cached HF id."""
    num_candidates: int = 2
    """K answers sampled per prompt."""
    max_new_tokens: int = 256
    """Answer length limit in tokens; answers cut here get finish reason "length"."""
    temperature: float = 0.8
    """Sampling temperature; 0 means greedy decoding (then K > 1 gives K copies of one answer: use K = 1)."""
    top_p: float = 0.95
    """Nucleus sampling: sample from the smallest token set whose probability reaches top_p."""
    batch_size: int | None = None
    """Prompts per chunk (each brings K sequences); a chunk is seeded and saved as one. Default: 8 for transformers
    (a padded batch), 64 for the vLLM engines (sent at once; the engine batches them continuously)."""
    seed: int = 0
    """Chunk i is sampled with seed + i, so reruns and resumed runs give the same answers."""
    system_prompt: str | None = None
    """A system instruction put before every prompt (replacing a system message the prompt has)."""
    backend: Literal["auto", "transformers", "vllm", "vllm-server"] = "auto"
    """`transformers` (any device), `vllm-server` (vLLM in its own virtualenv, CPU or GPU), `vllm` (vLLM imported
    here, GPU), or `auto`: the fastest of them that is installed (see `policy.generate`)."""
    chat_template: str | None = None
    """A chat template (Jinja string or file) for a tokenizer that has none."""
    device: str | None = None
    """`cpu`, `cuda`, `cuda:1`, ...; default: CUDA when available."""
    server_url: str | None = None
    """An OpenAI-compatible vLLM server that already serves `model` (`http://gpu-box:8000`, on this machine or
    another): generation sends it token ids (the tokenizer and chat template of `model` apply here) instead of
    starting an engine. A server that stops mid-run fails the run; rerun it once the server is back, and generation
    resumes where its file stopped."""
    tensor_parallel_size: int = 1
    """GPUs each vLLM engine that rlhfkit starts splits the model over (vLLM's --tensor-parallel-size)."""
    data_parallel_size: int = 1
    """Engine replicas of the vLLM server that rlhfkit starts, each on its own GPUs (vLLM's --data-parallel-size)."""

    def validate(self) -> None:
        checks = [
            (self.server_url is None or (self.server_url.startswith(("http://", "https://"))
                                         and self.backend in ("auto", "vllm-server")),
             "server_url must be an http(s) URL, with backend auto or vllm-server"),
            (self.tensor_parallel_size >= 1 and self.data_parallel_size >= 1,
             "tensor_parallel_size and data_parallel_size must be at least 1"),
            (self.num_candidates >= 1, "num_candidates must be at least 1"),
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.temperature >= 0, "temperature must be 0 (greedy) or positive"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.batch_size is None or self.batch_size >= 1, "batch_size must be at least 1"),
            (self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}"),
            (not (self.temperature == 0 and self.num_candidates > 1),
             "temperature 0 (greedy) gives K identical candidates; use num_candidates 1 or a positive temperature"),
        ]
        require(checks, "GenerationConfig")


@dataclasses.dataclass
class PolicyEvalConfig:
    max_new_tokens: int = 256
    """Answer length limit in tokens (greedy decoding)."""
    batch_size: int | None = None
    """Prompts per generation chunk; default: the engine's (see GenerationConfig.batch_size)."""
    backend: Literal["auto", "transformers", "vllm", "vllm-server"] = "auto"
    """Generation engine, as in GenerationConfig.backend."""
    system_prompt: str | None = None
    """The system instruction the policy is used with (the same for the policy and the reference)."""
    n_bootstrap: int = 2000
    """Bootstrap resamples (over prompts) for the 95% confidence intervals."""
    seed: int = 0
    """Seed of the bootstrap resampling (answers are greedy)."""
    device: str | None = None
    """`cpu`, `cuda`, `cuda:1`, ...; default: CUDA when available."""
    chat_template: str | None = None
    """A chat template (Jinja string or file) for a tokenizer that has none."""

    def validate(self) -> None:
        require([(self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
                 (self.batch_size is None or self.batch_size >= 1, "batch_size must be at least 1"),
                 (self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}"),
                 (self.n_bootstrap >= 1, "n_bootstrap must be at least 1")], "PolicyEvalConfig")


@dataclasses.dataclass
class EvolutionConfig:
    population_size: int = 6
    """Instructions alive in each generation."""
    generations: int = 4
    """Generations after the initial population (fewer when the budget runs out)."""
    elite: int = 2
    """Best instructions carried unchanged into the next generation."""
    tournament_size: int = 2
    """Parents are the fittest of this many random instructions."""
    crossover_rate: float = 0.3
    """Share of children made from two parents (the rest mutate one)."""
    llm_rate: float = 0.5
    """Share of children made by the LM (the rest by structural operators); 0 with no LM."""
    held_out: float = 0.3
    """Share of the examples (grouped by prompt) kept to confirm the winner."""
    seed: int = 0
    """Seed of the train / held-out split, the operators and the selection."""
    state_path: str | None = None
    """JSON file saved after every generation; an interrupted search resumes from it."""

    def validate(self) -> None:
        checks = [
            (self.population_size >= 2, "population_size must be at least 2"),
            (self.generations >= 0, "generations must be 0 or more"),
            (0 <= self.elite < self.population_size, "elite must be smaller than population_size"),
            (self.tournament_size >= 1, "tournament_size must be at least 1"),
            (0 <= self.crossover_rate <= 1 and 0 <= self.llm_rate <= 1, "rates must be in [0, 1]"),
            (0 < self.held_out < 1, "held_out must be a share between 0 and 1"),
        ]
        require(checks, "EvolutionConfig")


@dataclasses.dataclass
class InstructionEvolutionConfig:
    rounds: int = 3
    """Passes over the program's predictors; each pass proposes `candidates` instructions per predictor."""
    candidates: int = 4
    """Instructions proposed per predictor and round."""
    budget: int | None = None
    """Program calls (one per example answered) the search may spend, the valset comparison included; None:
    unlimited. The search stops early, keeping what it found, when the next step does not fit."""
    race_fraction: float = 0.5
    """Share of the trainset a candidate is scored on first; one that does not score above the current instruction
    there is dropped before it costs the rest."""
    level: float = CI_LEVEL
    """Confidence of the paired interval that must lie above zero for a candidate to replace an instruction."""
    n_bootstrap: int = 2000
    """Bootstrap resamples of that interval."""
    proposer_rate: float = 0.5
    """Share of proposals written by the proposer LM (when one is given); the rest come from the operators."""
    proposer_temperature: float = 1.0
    """Sampling temperature of the proposer LM, so rewrites of one instruction differ (0: its greedy rewrite, the
    same every time)."""
    num_threads: int = 1
    """Examples answered at once (`dspy.Evaluate`'s threads); raise it for an engine that batches requests (vLLM)."""
    failure_score: float = 0.0
    """Score of an example whose program call or metric raised."""
    seed: int = 0
    """Seed of the example order, the operators and the bootstrap."""
    state_path: str | None = None
    """JSON file saved after every step; a rerun with the same program, data and settings resumes from it."""

    def validate(self) -> None:
        require([(self.rounds >= 0, "rounds must be 0 or more"),
                 (self.candidates >= 1, "candidates must be at least 1"),
                 (self.budget is None or self.budget >= 1, "budget must be at least 1 program call"),
                 (0 < self.race_fraction <= 1, "race_fraction must be in (0, 1]"),
                 (0.5 < self.level < 1, "level must be in (0.5, 1)"),
                 (self.n_bootstrap >= 100, "n_bootstrap must be at least 100"),
                 (0 <= self.proposer_rate <= 1, "proposer_rate must be in [0, 1]"),
                 (self.proposer_temperature >= 0, "proposer_temperature must be 0 or more"),
                 (self.num_threads >= 1, "num_threads must be at least 1")], "InstructionEvolutionConfig")
