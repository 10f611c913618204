"""Run folders of training jobs that may run as several processes (`accelerate launch`, `torchrun`).

Every process calls `prepare_run_dir`: all look before the main process writes, so they agree on whether the folder
held an earlier run; only the main process writes. Create the trainer's arguments first (TRL / transformers
arguments set up the distributed state that this reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import InputError


def prepare_run_dir(out: str | Path, resume: bool, config: dict[str, Any]) -> Path:
    """Create `out` and write `config.json`; refuse a folder that holds another run unless `resume`."""
    from accelerate import PartialState

    state = PartialState()
    out = Path(out)
    # A folder holding only config.json is a start that failed before training (a bad model name, say): reusable.
    taken = out.exists() and any(p.name != "config.json" for p in out.iterdir())
    state.wait_for_everyone()
    if taken and not resume:
        raise InputError(f"{out} already holds a training run; pass resume to continue it or choose another "
                         "output_dir")
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.json", json.dumps(config, indent=1, default=str))
    state.wait_for_everyone()
    return out


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def last_complete_checkpoint(folder: str | Path) -> str | None:
    """The newest `checkpoint-N` in `folder` that was saved completely, or None.

    transformers writes `trainer_state.json` last, so a checkpoint without it was cut short (a kill or a full disk
    mid-save); resuming from it would fail or load half a model. Such folders are skipped, with a warning."""
    import logging
    import re

    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)),
                   key=lambda p: int(p.name.split("-")[1]), reverse=True)
    for checkpoint in found:
        if (checkpoint / "trainer_state.json").is_file():
            return str(checkpoint)
        logging.getLogger(__name__).warning("skipping %s: it was not saved completely", checkpoint)
    return None
