"""`run_pipeline`: run (or resume) the stages of `rlhfkit run` in a work folder.

The work folder holds one folder per stage, the resolved `config.yaml` and `manifest.json`. A stage is recorded in
the manifest (seconds, time, result) only when it has finished, so a rerun skips finished stages and starts the
interrupted one again, which continues from what it saved (see `rlhfkit.pipeline.stages`). `from_stage` drops that
stage and every later one (their folders too) and runs them again. A config that differs from the one the folder was
run with is refused, naming the first stage it affects, unless `from_stage` starts there or earlier.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from rlhfkit import __version__
from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import InputError
from rlhfkit.core.machine import machine_info
from rlhfkit.models.registry import KNOWN, ModelNotFoundError, resolve_model
from rlhfkit.models.vllm_server import cpu_build, stop_all
from rlhfkit.pipeline.config import PipelineConfig
from rlhfkit.pipeline.headline import headlines
from rlhfkit.pipeline.launch import check_launch
from rlhfkit.pipeline.reads import changed_reads
from rlhfkit.pipeline.stages import STAGES, TRAINING_STAGES, Context

MANIFEST = "manifest.json"


class WorkdirConflict(InputError):
    """The work folder holds a run made with another config."""


def first_changed_stage(manifest: dict[str, Any], settings: dict[str, Any]) -> str | None:
    """The earliest stage whose work depends on a setting that differs between the run in `manifest` and
    `settings` (the new config, dumped): a finished stage whose recorded reads changed, or the interrupted stage
    when what it read before it was cut short changed (unknown, for a stage killed outright: then any change)."""
    old = {key: value for key, value in manifest["config"].items() if key != "workdir"}
    new = {key: value for key, value in settings.items() if key != "workdir"}
    if old == new:
        return None
    partial = manifest.get("partial") or {}
    for name in STAGES:
        done = manifest["stages"].get(name)
        if done is None:  # the first stage not finished: the later ones have not started
            if partial.get("stage") == name:
                return name if changed_reads(_without_workdir(partial["reads"]), settings) else None
            return name
        # A stage recorded before stages kept their reads: any change may matter to it.
        if "reads" not in done or changed_reads(_without_workdir(done["reads"]), settings):
            return name
    return None


def _without_workdir(reads: dict[str, Any]) -> dict[str, Any]:
    return {path: value for path, value in reads.items() if path != "workdir"}


def _check_models(config: PipelineConfig) -> None:
    """Every local model the config names exists (before any work starts)."""
    named = [("policy.model", config.policy.model), ("reward.model", config.reward.model)]
    if config.label.annotator == "judge":
        named.append(("label.judge_lm", config.label.judge_lm))
    if config.instructions.enabled and config.instructions.lm != "none":
        named.append(("instructions.lm", config.instructions.lm))
    for field, name in named:
        if field in ("label.judge_lm", "instructions.lm"):
            if name not in KNOWN and not name.startswith("local:"):
                continue  # a LiteLLM model string: served elsewhere
            name = name.removeprefix("local:")
        try:
            path = resolve_model(name)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"{field}: {exc}") from None
        if path == name and not Path(path).is_dir():  # a Hugging Face id: it must be in the local cache
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(name, "config.json"), str):
                raise ModelNotFoundError(f"{field}: {name} is neither a bundled model, a folder, nor in the local "
                                         "Hugging Face cache (nothing is downloaded at run time)")


def _write_manifest(work: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(work / MANIFEST, json.dumps(manifest, indent=1, default=str))


def run_pipeline(config: PipelineConfig, *, base: Path | None = None, from_stage: str | None = None,
                 restart: bool = False, console: Console | None = None) -> dict[str, Any]:
    """Run the stages not yet finished; returns the manifest. Raises `LabelingPending` when people are still
    labeling (everything so far is saved; a rerun continues)."""
    console = console or Console()
    if from_stage is not None and from_stage not in STAGES:
        raise InputError(f"unknown stage {from_stage!r}; the stages are: {', '.join(STAGES)}")
    _check_models(config)
    check_launch(config.launch)
    work = Path(config.workdir)
    if restart and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    settings = config.model_dump(mode="json")
    manifest_path = work / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {
        "rlhfkit": __version__, "config": settings, "stages": {}}
    names = list(STAGES)
    changed = first_changed_stage(manifest, settings)
    if changed is not None and changed in manifest["stages"] and (
            from_stage is None or names.index(from_stage) > names.index(changed)):
        raise WorkdirConflict(f"{work} was run with another config, which changes what stage {changed!r} does; "
                              f"rerun it and the later stages with --from {changed}, use --restart to start over, or "
                              "choose another workdir")
    rerun = names[names.index(from_stage):] if from_stage else []
    if changed is not None and changed not in manifest["stages"]:
        rerun = names[names.index(changed):] if not rerun or names.index(changed) < names.index(rerun[0]) else rerun
    for name in rerun:
        manifest["stages"].pop(name, None)
        shutil.rmtree(work / name, ignore_errors=True)
    if (manifest.get("partial") or {}).get("stage") in rerun:
        manifest.pop("partial")
    manifest["config"] = settings
    atomic_write_text(work / "config.yaml", yaml.safe_dump(settings, sort_keys=False))
    _write_manifest(work, manifest)

    ctx = Context(settings=config, work=work, base=base or Path.cwd(), console=console)
    try:
        _run_stages(ctx, manifest, console)
    finally:
        stop_all()  # the generation engines of this run, whatever happened
    _write_metrics(work, manifest)
    return manifest


def _run_stages(ctx: Context, manifest: dict[str, Any], console: Console) -> None:
    for index, (name, (title, stage)) in enumerate(STAGES.items(), start=1):
        done = manifest["stages"].get(name)
        if done is not None:
            console.print(f"[green]✓[/] [{index}/{len(STAGES)}] {title}: done earlier ({done['seconds']:.1f} s)")
            continue
        if name in TRAINING_STAGES and not cpu_build():
            # A GPU engine holds most of the GPU's memory, which training needs. An idle CPU engine takes no CPU
            # time and a few GB of RAM; kept, it answers the evaluation's reference prompts without a restart.
            stop_all()
        console.rule(f"[bold][{index}/{len(STAGES)}] {title}[/]")
        started = time.perf_counter()
        ctx.reads = {}
        try:
            result = stage(ctx)
        except BaseException as exc:
            # What the stage read so far decides, on a rerun with another config, whether its saved work still
            # fits; a stage killed outright leaves nothing here and any config change restarts it.
            manifest["partial"] = {"stage": name, "reads": dict(ctx.reads)}
            _write_manifest(ctx.work, manifest)
            if isinstance(exc, KeyboardInterrupt):
                console.print(f"[yellow]interrupted in stage {name!r}; rerun the same command to continue from "
                              "what it saved[/]")
            raise
        manifest.pop("partial", None)
        manifest["stages"][name] = {"seconds": round(time.perf_counter() - started, 2),
                                    "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                    "reads": dict(sorted(ctx.reads.items())), "result": result}
        _write_manifest(ctx.work, manifest)


def _write_metrics(work: Path, manifest: dict[str, Any]) -> Path:
    """`metrics.json`: every stage's result and its seconds under `timings_s` (the report stage's included)."""
    stages = manifest["stages"]
    metrics = {"headline": [line["text"] for line in headlines(stages)],
               "timings_s": {name: entry["seconds"] for name, entry in stages.items()},
               "total_s": round(sum(entry["seconds"] for entry in stages.values()), 2),
               **{name: entry["result"] for name, entry in stages.items()}, "machine": machine_info()}
    path = work / "metrics.json"
    atomic_write_text(path, json.dumps(metrics, indent=1, default=str))
    return path
