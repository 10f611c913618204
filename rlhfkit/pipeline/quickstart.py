"""The quick-start job behind `make run`: the preference data path on a sample rlhfkit generates itself, plus the
bundled models made ready. Issue 8 grows it into the full loop (generate -> label -> reward -> policy -> DSPy).

Every stage writes into the work folder and is recorded in `manifest.json` when it finishes; a rerun skips finished
stages, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from preference.agreement import agreement_report
from preference.export import ExportPolicy, to_kto, to_pairs, write_rows
from preference.ingest import import_file
from preference.schema import PreferenceRecord
from preference.split import split_by_prompt
from preference.store import PreferenceStore, save_preferences
from preference.synthetic import synthetic_preferences
from rlhfkit.core.atomic import atomic_write_text, write_jsonl
from rlhfkit.core.registry import BUNDLED, resolve_model

Stage = tuple[str, Callable[[Path], dict[str, Any]]]


def _sample_row(record: PreferenceRecord) -> dict[str, Any]:
    """The record as a user would write it in rlhfkit's JSONL format (derived ids left out)."""
    row = record.to_row()
    for key in ("judgment_id", "pair_id", "prompt_messages"):
        row.pop(key)
    return {**row, "metadata": record.metadata}


def _stages(n_prompts: int, seed: int) -> list[Stage]:
    def sample(work: Path) -> dict[str, Any]:
        records = synthetic_preferences(n_prompts, seed)
        write_jsonl(map(_sample_row, records), work / "sample.jsonl")
        return {"judgments": len(records), "output": "sample.jsonl"}

    def import_(work: Path) -> dict[str, Any]:
        shutil.rmtree(work / "store", ignore_errors=True)  # a half-finished earlier attempt never committed
        report = import_file(work / "sample.jsonl", PreferenceStore(work / "store"))
        return {"judgments": report.records_imported, "rejected": report.rows_rejected, "output": "store/"}

    def stats(work: Path) -> dict[str, Any]:
        report = agreement_report(list(PreferenceStore(work / "store").records())).to_dict()
        atomic_write_text(work / "stats.json", json.dumps(report, indent=1))
        return {"fleiss_kappa": report["fleiss_kappa"], "krippendorff_alpha": report["krippendorff_alpha"],
                "output": "stats.json"}

    def split(work: Path) -> dict[str, Any]:
        shutil.rmtree(work / "splits", ignore_errors=True)
        parts = split_by_prompt(PreferenceStore(work / "store").records(), {"train": 0.8, "test": 0.2}, seed)
        for name, part in parts.items():
            save_preferences(part, work / "splits" / name)
        return {name: len(part) for name, part in parts.items()} | {"output": "splits/"}

    def export(work: Path) -> dict[str, Any]:
        train = list(PreferenceStore(work / "splits" / "train").records())
        pairs, pair_report = to_pairs(train, ExportPolicy(ties="margin0"))
        kto, kto_report = to_kto(train, ExportPolicy(ties="margin0", both_bad="negatives"))
        write_rows(pairs, work / "export" / "reward_train.jsonl")
        write_rows(kto, work / "export" / "kto_train.jsonl")
        atomic_write_text(work / "export" / "report.json",
                          json.dumps({"pairs": pair_report.as_dict(), "kto": kto_report.as_dict()}, indent=1))
        return {"reward_rows": len(pairs), "kto_rows": len(kto), "output": "export/"}

    def models(work: Path) -> dict[str, Any]:
        return {name: resolve_model(name) for name in BUNDLED}

    return [("sample", sample), ("import", import_), ("stats", stats), ("split", split), ("export", export),
            ("models", models)]


class WorkdirMismatch(ValueError):
    """The work folder holds a run made with other parameters."""


def run_quickstart(workdir: str | Path, n_prompts: int = 60, seed: int = 0, restart: bool = False) -> Table:
    """Run (or resume) the quick-start stages in `workdir`; returns a summary table and writes metrics.json.

    Resuming with other parameters would mix two runs, so it is refused unless `restart` (which starts afresh)."""
    work = Path(workdir)
    params = {"n_prompts": n_prompts, "seed": seed}
    manifest_path = work / "manifest.json"
    if restart and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"params": params, "stages": {}}
    if manifest.get("params") != params:
        raise WorkdirMismatch(f"{work} holds a run made with {manifest.get('params')}, not {params}; resume it with "
                              "the same options, use another --workdir, or pass --restart to start it over")
    for name, stage in _stages(n_prompts, seed):
        if name in manifest["stages"]:
            continue
        started = time.perf_counter()
        result = stage(work)
        manifest["stages"][name] = {"seconds": round(time.perf_counter() - started, 3), "result": result}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    timings = {name: entry["seconds"] for name, entry in manifest["stages"].items()}
    atomic_write_text(work / "metrics.json", json.dumps({"timings_s": timings, "stages": manifest["stages"]},
                                                        indent=1))
    table = Table(title=f"rlhfkit quick start: {work}")
    for column in ("stage", "seconds", "result"):
        table.add_column(column, overflow="fold")
    for name, entry in manifest["stages"].items():
        result = {key: round(value, 3) if isinstance(value, float) else value for key, value in entry["result"].items()}
        table.add_row(name, f"{entry['seconds']:.2f}", json.dumps(result))
    table.caption = f"metrics: {work / 'metrics.json'}"
    return table
