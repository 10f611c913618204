"""One process of a training stage that `rlhfkit run` launched on several (its `launch` section):

    accelerate launch ... -m rlhfkit.pipeline.launched {reward,update} --work RUN_DIR --base CONFIG_DIR

Each process reads the run's `config.yaml`, builds exactly the training the stage would run in one process
(`rlhfkit.pipeline.stages.TRAINING`) and runs its share; the main process of the run evaluates afterwards. Other
machines of a multi-node run start the same command with their `--machine_rank` (docs/pipeline.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from rlhfkit.pipeline.launch import FAILURE


def main(argv: list[str] | None = None) -> None:
    from rlhfkit.pipeline.stages import TRAINING

    parser = argparse.ArgumentParser(prog="python -m rlhfkit.pipeline.launched", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=sorted(TRAINING))
    parser.add_argument("--work", type=Path, required=True, help="The run's work folder (holds config.yaml).")
    parser.add_argument("--base", type=Path, required=True, help="The folder relative paths of the config start at.")
    args = parser.parse_args(argv)

    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env
    from rich.console import Console

    from rlhfkit.pipeline.config import PipelineConfig
    from rlhfkit.pipeline.stages import Context

    # Join the process group now (gloo on a CPU), before anything asks which process this is.
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    try:
        settings = PipelineConfig.model_validate(yaml.safe_load((args.work / "config.yaml").read_text()))
        TRAINING[args.stage](Context(settings=settings, work=args.work, base=args.base, console=Console(stderr=True)))
    except Exception as exc:
        # One line the launching run finds among the launcher's own report (rlhfkit.pipeline.launch.FAILURE).
        said = " ".join(str(exc).split())
        print(f"{FAILURE} {state.process_index} failed: {type(exc).__name__}: {said[:500]}", file=sys.stderr,
              flush=True)
        raise


if __name__ == "__main__":
    main()
