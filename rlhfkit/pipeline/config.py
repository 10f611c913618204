"""`PipelineConfig`: everything `rlhfkit run` does, as one YAML file. Every field is documented where it is defined.

The defaults are the quick start (`make run`): the bundled SmolLM2-135M-Instruct as the policy, rlhfkit's own
verifiable prompts, the IFEval verifier as annotator, a MiniLM reward model, one DPO round, DSPy scoring and a short
instruction search, sized to finish in about 15 minutes on a 2-core CPU with intervals that exclude chance
(docs/pipeline.md has the results and timings).

`load_config(path)` validates the whole file before any work starts (pydantic, unknown keys refused) and names the
file, line and field of each problem. `default_yaml()` writes the defaults with their documentation as comments
(`rlhfkit run --show-config`).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from policy.config import (
    DPOTrainingConfig,
    EvolutionConfig,
    GenerationConfig,
    PolicyEvalConfig,
    PPOTrainingConfig,
    RLTrainingConfig,
)
from policy.prompts import CONSTRAINT_IDS, SOMETIMES_FOLLOWED
from reward.config import RewardTrainingConfig
from rlhfkit.core.errors import ConfigError, InputError
from rlhfkit.core.fields import field_default, field_docs, field_types, line_of, read_yaml_mapping


class Section(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default. Lax types on purpose: YAML reads
    # 1e-4 as a string (it wants 1.0e-4), which pydantic turns into the float a user meant.
    model_config = ConfigDict(extra="forbid", validate_default=True)


class PolicySection(Section):
    model: str = Field("smollm2-135m-instruct", description="The policy to improve: a bundled name, a local folder "
                       "(a LoRA adapter folder loads merged) or a Hugging Face id in the local cache.")
    system_prompt: str | None = Field(None, description="A system instruction used for every answer, in "
                                      "generation, training and evaluation alike.")


class PromptsSection(Section):
    source: str = Field("builtin", description="'builtin' (rlhfkit's own instruction-following prompts: tasks x "
                        "verifiable constraints) or a prompts file (JSONL: prompt, optional instruction_id_list + "
                        "kwargs as in IFEval).")
    constraints: list[str] | None = Field(list(SOMETIMES_FOLLOWED), description="Built-in prompts only: the "
                                          "IFEval constraints to draw from (null: all of policy.prompts."
                                          "CONSTRAINT_IDS); the default keeps those the bundled policy follows "
                                          "sometimes, whose answers make informative pairs.")
    train: int = Field(128, ge=2, description="Prompts the policy answers to make training pairs.")
    heldout: int = Field(128, ge=2, description="Prompts kept apart (grouped by prompt) to evaluate the policy "
                         "before and after the update.")


    @field_validator("constraints")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        unknown = [name for name in value or [] if name not in CONSTRAINT_IDS]
        if unknown or value == []:
            raise InputError(f"unknown constraint(s) {', '.join(unknown) or '(empty list)'}; built-in: "
                             f"{', '.join(CONSTRAINT_IDS)}")
        return value


class LabelStudioSection(Section):
    project: str | None = Field(None, description="Project title (created if missing); null: one project per work "
                                "folder, 'rlhfkit run: <workdir>'.")
    overlap: int = Field(1, ge=1, description="Annotators per pair.")
    wait: bool = Field(True, description="Wait, with a live progress bar, until every pair is labeled; false: "
                       "push, pull what is there and stop (rerun `rlhfkit run` later to continue).")
    timeout_s: float | None = Field(None, gt=0, description="Stop waiting after this many seconds (the labels so "
                                    "far are kept; rerun to continue); null: wait until done.")
    poll_s: float = Field(5.0, gt=0, description="Seconds between progress checks.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the local server started when LABEL_STUDIO_URL "
                      "is not set.")


class LabelSection(Section):
    annotator: Literal["verifier", "labelstudio", "reward", "judge", "file"] = Field(
        "verifier", description="Who labels the pairs: 'verifier' (IFEval checks), 'labelstudio' (people, in a "
        "Label Studio server), 'reward' (a trained reward model: reward_model), 'judge' (an LLM judge: judge_lm) or "
        "'file' (an existing preference file: file).")
    mode: Literal["strict", "loose"] = Field("loose", description="Verifier mode: 'loose' also accepts an answer "
                                             "without its first/last line or markdown asterisks.")
    file: str | None = Field(None, description="Preference file for annotator 'file' (any format `rlhfkit data "
                             "import` reads).")
    reward_model: str | None = Field(None, description="Reward model folder for annotator 'reward'.")
    judge_lm: str = Field("smollm2-135m-instruct", description="LM for annotator 'judge': a bundled name, "
                          "local:PATH or a LiteLLM model string (its API key from the environment).")
    labelstudio: LabelStudioSection = Field(default_factory=LabelStudioSection,
                                            description="Settings for annotator 'labelstudio'.")

    @model_validator(mode="after")
    def _needs(self) -> LabelSection:
        if self.annotator == "file" and not self.file:
            raise InputError("annotator 'file' needs label.file (a preference file)")
        if self.annotator == "reward" and not self.reward_model:
            raise InputError("annotator 'reward' needs label.reward_model (a reward model folder)")
        return self


# Settings the run sets itself in each training config: the model and system prompt (section `policy`), the
# folder (under `workdir`), the seed (top level), resuming (always) and how often to checkpoint and log.
RUN_LEVEL = frozenset({"output_dir", "seed", "resume", "save_steps", "logging_steps"})
POLICY_RUN_LEVEL = RUN_LEVEL | {"model", "system_prompt", "chat_template"}


def section_of(config_cls: type, name: str, *, exclude: frozenset[str], job: dict[str, tuple[Any, str]] | None = None,
               notes: dict[str, str] | None = None, **extra: Any) -> type[Section]:
    """A config section made of `config_cls`'s fields (minus `exclude`), with their defaults and documentation,
    so that a library default is the pipeline's too. `job` names the few fields the default job sets otherwise,
    each with its value and the reason; `notes` adds what a field means in the run; `extra` adds run-level fields
    (name=(type, Field(...)))."""
    from pydantic import create_model

    docs, types = field_docs(config_cls), field_types(config_cls)
    job = job or {}
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(config_cls):
        if field.name in exclude:
            continue
        default = job[field.name][0] if field.name in job else field_default(field)
        doc = docs.get(field.name, "")
        if notes and field.name in notes:
            doc += " " + notes[field.name]
        if field.name in job:
            doc += (f" The default job uses {default!r} ({job[field.name][1]}; {config_cls.__name__}'s default: "
                    f"{field_default(field)!r}).")
        value = Field(default_factory=lambda value=default: copy.deepcopy(value), description=doc) if isinstance(
            default, list | dict) else Field(default, description=doc)
        fields[field.name] = (types[field.name], value)
    model = create_model(name, __base__=Section, **fields, **extra)
    model.__doc__ = f"The fields of `{config_cls.__module__}.{config_cls.__name__}` (see there)."
    return model


# The run sets these for every stage that generates: the policy (section `policy`), the seed (top level) and the
# engine (generate.backend).
ENGINE_RUN_LEVEL = frozenset({"model", "system_prompt", "chat_template", "seed", "device"})
GenerateSection = section_of(
    GenerationConfig, "GenerateSection", exclude=ENGINE_RUN_LEVEL,
    job={"num_candidates": (4, "every two distinct answers of a prompt make a pair to label"),
         "max_new_tokens": (64, "IFEval endings such as a closing phrase or a P.S. fit; measured on the default job"),
         "temperature": (1.0, "diverse answers make informative pairs")},
    notes={"backend": "In a run, every stage that generates (candidates, evaluation, DSPy, the instruction search) "
                      "uses it; 'vllm-server' is started once per model and reused."})
EvaluateSection = section_of(
    PolicyEvalConfig, "EvaluateSection", exclude=ENGINE_RUN_LEVEL | {"backend"},
    job={"max_new_tokens": (80, "held-out answers of the default job's prompts fit")},
    examples=(int, Field(4, ge=0, description="Held-out answers shown before and after in the report.")))
RewardSection = section_of(
    RewardTrainingConfig, "RewardSection", exclude=RUN_LEVEL,
    job={"learning_rate": (1e-4, "a few hundred judgments: measured on the default job"),
         "num_train_epochs": (3.0, "a few hundred judgments"), "per_device_train_batch_size": (8, "more steps")},
    heldout=(float, Field(0.4, gt=0, lt=1, description="Share of labeled prompts kept to evaluate the reward model "
                          "(accuracy, calibration).")),
    learning_curve=(list[Annotated[float, Field(gt=0, lt=1)]], Field(
        default_factory=lambda: [0.25, 0.5], description="Also train the same recipe on these shares of the "
        "training prompts and plot held-out accuracy against labeled pairs (reward/curve.png): would more labels "
        "help? Empty: skip.")))
DPOSection = section_of(
    DPOTrainingConfig, "DPOSection", exclude=POLICY_RUN_LEVEL,
    job={"learning_rate": (2e-4, "LoRA on 79 pairs: measured on the default job"),
         "max_length": (192, "the job's prompts and 64-token answers fit"),
         "pairs_per_prompt": (1, "spreads the minutes over more prompts: measured"),
         "loss_type": (["sigmoid", "sft"], "adds the chosen answers' likelihood (RPO): measured")})
RLSection = section_of(RLTrainingConfig, "RLSection", exclude=POLICY_RUN_LEVEL | {"algo", "reward_models", "verifier",
                                                                                    "reward_weights"})
PPOSection = section_of(PPOTrainingConfig, "PPOSection", exclude=POLICY_RUN_LEVEL | {"reward_models", "verifier",
                                                                                       "reward_weights"})


def section_values(section: Any, config_cls: type) -> dict[str, Any]:
    """The values of a section made by `section_of` that are fields of `config_cls`, read one by one (a stage's
    recording view notes each)."""
    values = {}
    for field in dataclasses.fields(config_cls):
        try:
            values[field.name] = getattr(section, field.name)
        except AttributeError:  # a run-level field, which the stage sets
            continue
    return values


class UpdateSection(Section):
    method: Literal["dpo", "grpo", "rloo", "ppo"] = Field("dpo", description="How the policy learns: 'dpo' from "
                                                          "the labeled pairs (settings: dpo); 'grpo' or 'rloo' "
                                                          "(settings: rl) or 'ppo' (settings: ppo) online, rewarded "
                                                          "by the run's reward model (and the verifier).")
    verifier_reward: bool = Field(True, description="GRPO/RLOO/PPO: add the IFEval verifier's pass share (loose) to "
                                  "the reward model's reward.")
    dpo: DPOSection = Field(default_factory=DPOSection, description="DPO settings (policy.config.DPOTrainingConfig).")
    rl: RLSection = Field(default_factory=RLSection, description="GRPO and RLOO settings "
                          "(policy.config.RLTrainingConfig).")
    ppo: PPOSection = Field(default_factory=PPOSection, description="PPO settings (policy.config.PPOTrainingConfig).")


class DSPySection(Section):
    prompts: int = Field(6, ge=1, description="Held-out prompts the updated policy answers through a DSPy "
                         "program, scored by `dspy.Evaluate` with the reward model + verifier metric.")
    max_new_tokens: int = Field(64, ge=8, description="Answer length limit in the DSPy program.")


InstructionsSection = section_of(
    EvolutionConfig, "InstructionsSection", exclude=frozenset({"seed", "state_path"}),
    job={"population_size": (4, "the default job's budget of 160 policy calls"),
         "generations": (2, "the same budget")},
    enabled=(bool, Field(True, description="Search for a better system instruction for the updated policy.")),
    task=(str, Field("Answer the request and follow every instruction in it about format, length and wording",
                     description="What the instruction is for (the starting instruction and the LM's brief).")),
    prompts=(int, Field(24, ge=2, description="Training prompts the search scores instructions on (held_out of "
                        "them kept to confirm the winner).")),
    budget=(int, Field(160, ge=10, description="Policy calls (answers generated) the search may spend.")),
    lm=(str, Field("none", description="LM that writes and rewrites instructions: a bundled name, local:PATH, a "
                   "LiteLLM model string, or 'none' (structural operators only: the default, since the bundled "
                   "135M model writes instructions that score lower than its start, docs/pipeline.md).")),
    max_new_tokens=(int, Field(64, ge=8, description="Answer length limit when scoring an instruction.")),
    reward_weight=(float, Field(0.5, ge=0, description="Weight of the reward model against the verifier (1) in "
                                "the instruction score.")),
    heldout_check=(bool, Field(True, description="Answer the run's held-out prompts under the found instruction "
                               "and under its start, and report the paired change in pass rate (costs two greedy "
                               "passes; skipped when the start is kept).")))


class LaunchSection(Section):
    num_processes: int = Field(1, ge=1, description="Processes the training stages (reward, update) run on, "
                               "started by `accelerate launch`: one per GPU, or gloo processes on a machine without "
                               "one; 1 trains in the run's own process. The other stages always run in the main "
                               "process. Precision is each method's own bf16 setting.")
    accelerate_config: str | None = Field(None, description="An accelerate config file for the training stages "
                                          "(configs/accelerate/ddp.yaml, fsdp.yaml, deepspeed_zero2.yaml, or your "
                                          "own, multi-node included); num_processes above overrides the file's "
                                          "when it is above 1.")
    main_process_port: int = Field(0, ge=0, le=65535, description="Port of the processes' rendezvous (0: a free "
                                   "one).")


class PipelineConfig(Section):
    workdir: str = Field("runs/main", description="Folder for every stage's outputs, the manifest and the report; "
                         "a rerun resumes there.")
    seed: int = Field(0, description="Seed of the prompt sample, the splits, sampling and training.")
    policy: PolicySection = Field(default_factory=PolicySection, description="The policy being improved.")
    prompts: PromptsSection = Field(default_factory=PromptsSection, description="Where prompts come from.")
    generate: GenerateSection = Field(default_factory=GenerateSection, description="Candidate answers to label.")
    label: LabelSection = Field(default_factory=LabelSection, description="Who labels the pairs.")
    reward: RewardSection = Field(default_factory=RewardSection, description="The reward model.")
    update: UpdateSection = Field(default_factory=UpdateSection, description="The policy update.")
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection, description="Policy before and after.")
    dspy: DSPySection = Field(default_factory=DSPySection, description="Scoring the policy with DSPy modules.")
    instructions: InstructionsSection = Field(default_factory=InstructionsSection,
                                              description="The instruction search.")
    launch: LaunchSection = Field(default_factory=LaunchSection, description="Where the training stages run: "
                                  "this process, or several under `accelerate launch` (docs/pipeline.md).")

    def check_paths(self, base: Path) -> list[str]:
        """Problems with files the config names (checked before any work starts)."""
        problems = []
        named = [("prompts.source", self.prompts.source if self.prompts.source != "builtin" else None),
                 ("label.file", self.label.file if self.label.annotator == "file" else None),
                 ("label.reward_model", self.label.reward_model if self.label.annotator == "reward" else None),
                 ("launch.accelerate_config", self.launch.accelerate_config)]
        for field, value in named:
            if value is not None and not (base / value).expanduser().exists():
                problems.append(f"{field}: {value} does not exist")
        return problems


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """The validated config from `path` (None: the defaults), with `overrides` ({"label.annotator": "reward"})."""
    data, root = read_yaml_mapping(path) if path is not None else ({}, None)
    where = str(path) if path is not None else "defaults"
    for dotted, value in (overrides or {}).items():
        section = data
        *parents, last = dotted.split(".")
        for name in parents:
            section = section.setdefault(name, {})
        section[last] = value
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            field = ".".join(str(part) for part in loc) or "(top level)"
            line = line_of(root, loc)
            place = "command line" if field in (overrides or {}) else f"{where}:{line}" if line else where
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                parent = PipelineConfig
                for part in loc[:-1]:
                    parent = getattr(parent.model_fields.get(str(part)), "annotation", None) or parent
                known = ", ".join(getattr(parent, "model_fields", {})) or "none"
                message = f"unknown key (known here: {known})"
            lines.append(f"{place}: {field}: {message}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None
    for name, section, config_cls in (
            ("generate", config.generate, GenerationConfig), ("reward", config.reward, RewardTrainingConfig),
            ("update.dpo", config.update.dpo, DPOTrainingConfig), ("update.rl", config.update.rl, RLTrainingConfig),
            ("update.ppo", config.update.ppo, PPOTrainingConfig), ("evaluate", config.evaluate, PolicyEvalConfig),
            ("instructions", config.instructions, EvolutionConfig)):
        try:  # the library's own checks (e.g. a GRPO batch that is a multiple of the group), before any work
            config_cls(**section_values(section, config_cls)).validate()
        except ValueError as exc:
            raise ConfigError(f"{where}: {name}: {exc}") from None
    if config.generate.num_candidates < 2:
        raise ConfigError(f"{where}: generate.num_candidates: the run labels pairs of answers: at least 2 per prompt")
    base = Path(path).parent if path is not None else Path.cwd()
    problems = config.check_paths(base)
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    _anchor_model_paths(config, base)
    return config


def _anchor_model_paths(config: PipelineConfig, base: Path) -> None:
    """Model folders written relative to the config file (./models/x) are found from any working directory."""
    def anchored(value: str) -> str:
        prefix, name = ("local:", value[6:]) if value.startswith("local:") else ("", value)
        path = Path(name).expanduser()
        if not path.is_absolute() and (name.startswith(".") or (base / path).exists()):
            return prefix + str((base / path).resolve())
        return value

    config.policy.model = anchored(config.policy.model)
    config.reward.model = anchored(config.reward.model)
    config.label.judge_lm = anchored(config.label.judge_lm)
    config.instructions.lm = anchored(config.instructions.lm)
    if config.launch.accelerate_config is not None:
        config.launch.accelerate_config = str((base / config.launch.accelerate_config).expanduser().resolve())


def default_yaml(model: type[BaseModel] = PipelineConfig, indent: int = 0) -> str:
    """The default config as YAML, each field preceded by its documentation."""
    import textwrap

    out: list[str] = []
    pad = " " * indent
    instance = model()
    for name, field in model.model_fields.items():
        for line in textwrap.wrap(field.description or "", 110 - indent):
            out.append(f"{pad}# {line}")
        value = getattr(instance, name)
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:")
            out.append(default_yaml(type(value), indent + 2))
        else:
            out.append(f"{pad}{yaml.safe_dump({name: value}, default_flow_style=True, width=1000).strip()[1:-1]}")
    return "\n".join(out)
