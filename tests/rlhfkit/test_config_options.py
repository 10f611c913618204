"""Every default is defined once, in a config dataclass: the command line's options and the pipeline's sections are
generated from it, `--config FILE.yaml` works on every training command, and bad values name their place."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer
import yaml
from typer.testing import CliRunner

from policy.config import (
    DPOTrainingConfig,
    EvolutionConfig,
    GenerationConfig,
    InstructionEvolutionConfig,
    PolicyEvalConfig,
    PPOTrainingConfig,
    RLTrainingConfig,
    SFTTrainingConfig,
)
from reward.config import RewardTrainingConfig
from rlhfkit.cli.config_options import config_command
from rlhfkit.cli.main import app
from rlhfkit.core.fields import defaults, field_docs
from rlhfkit.pipeline import config as pipeline

runner = CliRunner()
COMMANDS = {("reward", "train", "data"): RewardTrainingConfig, ("policy", "sft", "data"): SFTTrainingConfig,
            ("policy", "dpo", "data"): DPOTrainingConfig, ("policy", "rl"): RLTrainingConfig}


def shown(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--show-config"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.output)


@pytest.mark.parametrize("command", list(COMMANDS), ids=" ".join)
def test_every_training_command_shows_its_config_defaults_and_takes_a_config_file(command, tmp_path):
    config_cls = COMMANDS[command]
    assert shown(*command) == yaml.safe_load(yaml.safe_dump(defaults(config_cls)))
    assert all(field_docs(config_cls).get(field.name) for field in dataclasses.fields(config_cls))

    path = tmp_path / "settings.yaml"
    path.write_text("learning_rate: 3.0e-4\nseed: 7\n")
    settings = shown(*command, "--config", str(path), "--seed", "9", "--epochs", "2")
    assert settings["learning_rate"] == 3e-4 and settings["seed"] == 9 and settings["num_train_epochs"] == 2

    path.write_text("learning_rate: 3.0e-4\nlearning_rat: 1\n")
    result = runner.invoke(app, [*command, "--config", str(path)], terminal_width=300)
    assert result.exit_code == 1 and f"{path}:2: learning_rat: unknown setting" in result.output, result.output
    result = runner.invoke(app, [*command, "--learning-rate", "-1"], terminal_width=300)
    assert result.exit_code == 1 and "command line: --learning-rate must be positive" in result.output, result.output
    path.write_text("seed: 1\nlearning_rate: 0\n")  # the same check, read from a file: its line
    result = runner.invoke(app, [*command, "--config", str(path)], terminal_width=300)
    assert result.exit_code == 1 and f"{path}:2: learning_rate must be positive" in result.output, result.output


@pytest.mark.parametrize("command, config_cls", [(("policy", "generate", "--out", "c.jsonl"), GenerationConfig),
                                                 (("policy", "eval", "m", "--out", "e"), PolicyEvalConfig)],
                         ids=["generate", "eval"])
def test_generation_and_evaluation_take_their_config_too(command, config_cls, tmp_path):
    assert shown(*command) == yaml.safe_load(yaml.safe_dump(defaults(config_cls)))
    assert all(field_docs(config_cls).get(field.name) for field in dataclasses.fields(config_cls))
    path = tmp_path / "settings.yaml"
    path.write_text("max_new_tokens: 32\nbatch_size: 4\n")
    settings = shown(*command, "--config", str(path), "--max-new-tokens", "48", "--system", "Be brief.")
    assert settings["max_new_tokens"] == 48 and settings["batch_size"] == 4 and settings["system_prompt"] == "Be brief."
    result = runner.invoke(app, [*command, "--batch-size", "0"], terminal_width=300)
    assert result.exit_code == 1 and "--batch-size must be at least 1" in result.output, result.output


@pytest.mark.parametrize("command, config_cls", [(("instructions", "optimize", "-o", "s"), EvolutionConfig),
                                                 (("instructions", "tune", "-o", "t"), InstructionEvolutionConfig)],
                         ids=["optimize", "tune"])
def test_the_instruction_searches_take_their_config_too(command, config_cls, tmp_path):
    assert shown(*command) == yaml.safe_load(yaml.safe_dump(defaults(config_cls)))
    assert all(field_docs(config_cls).get(field.name) for field in dataclasses.fields(config_cls))
    path = tmp_path / "settings.yaml"
    path.write_text("seed: 3\n")
    assert shown(*command, "--config", str(path))["seed"] == 3


def test_rl_chooses_its_config_by_algo_and_refuses_flags_of_the_other():
    assert shown("policy", "rl", "--algo", "ppo") == yaml.safe_load(yaml.safe_dump(defaults(PPOTrainingConfig)))
    assert shown("policy", "rl", "--algo", "rloo")["algo"] == "rloo"
    result = runner.invoke(app, ["policy", "rl", "--algo", "ppo", "--num-generations", "8"], terminal_width=200)
    assert result.exit_code == 1 and "--num-generations only apply to --algo grpo, rloo" in result.output


def test_the_pipeline_sections_are_the_library_configs():
    config = pipeline.PipelineConfig()
    for section, config_cls in ((config.generate, GenerationConfig), (config.reward, RewardTrainingConfig),
                                (config.update.dpo, DPOTrainingConfig), (config.update.rl, RLTrainingConfig),
                                (config.update.ppo, PPOTrainingConfig), (config.evaluate, PolicyEvalConfig),
                                (config.instructions, EvolutionConfig)):
        library = defaults(config_cls)
        for name, value in pipeline.section_values(section, config_cls).items():
            if value != library[name]:  # only where the default job says why, in the field's documentation
                assert "The default job uses" in type(section).model_fields[name].description, name


def test_changing_a_config_default_changes_the_command_line_and_the_pipeline_together():
    @dataclasses.dataclass
    class Changed(RewardTrainingConfig):
        ensemble: int = 3
        """Members trained with seeds seed, seed+1, ..."""

    cli = typer.Typer()
    config_command(cli, Changed, lambda config: None, name="train")
    result = runner.invoke(cli, ["--show-config"])
    assert result.exit_code == 0 and yaml.safe_load(result.output)["ensemble"] == 3
    section = pipeline.section_of(Changed, "ChangedSection", exclude=pipeline.RUN_LEVEL)
    assert section().ensemble == 3 and section.model_fields["ensemble"].description.startswith("Members trained")


@pytest.mark.parametrize("command, missing", [(("reward", "train"), "argument DATA"),
                                              (("annotate", "loop", "--store", "s", "--out", "o"), "option --pool")],
                         ids=["reward-train", "annotate-loop"])
def test_show_config_needs_no_data_but_a_run_does(command, missing):
    assert "seed" in shown(*command[:2])  # the settings print without the command's data
    result = runner.invoke(app, list(command), terminal_width=300)
    assert result.exit_code == 2 and f"missing {missing}" in result.output, result.output


def test_every_command_takes_a_config_file(tmp_path):
    """Commands without a config dataclass take --config too: the file fills their options, flags win, an unknown
    key or a missing required option is named."""
    from typer.main import get_command

    from preference.store import PreferenceStore

    def commands(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, (*path, name))
            else:
                yield (*path, name), command

    lacking = [" ".join(path) for path, command in commands(get_command(app))
               if command.params and not any(param.name == "config" for param in command.params)]
    assert lacking == [], lacking

    data = tmp_path / "prefs.jsonl"
    data.write_text(json.dumps({"prompt": "Hi?", "response_a": "Hello.", "response_b": "Go.", "label": "a"}) + "\n")
    settings = tmp_path / "import.yaml"
    settings.write_text(f"store: {tmp_path / 'store'}\nannotator: carol\nsource: from-file\n")
    result = runner.invoke(app, ["data", "import", str(data), "--config", str(settings), "--source", "flag"])
    assert result.exit_code == 0, result.output
    (record,) = PreferenceStore(tmp_path / "store").records()
    assert (record.annotator, record.source) == ("carol", "flag")
    settings.write_text("annotator: carol\nstor: x\n")
    result = runner.invoke(app, ["data", "import", str(data), "--config", str(settings)], terminal_width=300)
    assert result.exit_code == 1 and f"{settings}:2: stor: not an option of" in result.output
    result = runner.invoke(app, ["data", "import", str(data)], terminal_width=300)
    assert result.exit_code == 2 and "missing option --store" in result.output
