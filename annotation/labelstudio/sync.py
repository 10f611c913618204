"""Push pairs to a Label Studio project and pull judgments into a preference store, both safe to run again.

- `push` is idempotent by pair id: it reads which pairs the project already has and sends only the others, in
  batches. If the server goes away mid-push, it waits (client retries with backoff), re-reads the project and goes
  on; a batch whose answer was lost is found on the server and not sent twice.
- `pull` is incremental: it remembers each annotation's `updated_at` (in the store folder) and writes only new or
  edited ones; an edited annotation supersedes the earlier judgment (same judgment id). Skipped / cancelled
  annotations are not labels. Results that do not match rlhfkit's config are quarantined with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from annotation.base import Annotator
from annotation.labelstudio.client import LabelStudioClient, LabelStudioError, LabelStudioUnavailable
from annotation.labelstudio.config import LABEL_CONFIG, ResultError, config_problem
from annotation.labelstudio.tasks import make_task, record_of_annotation
from preference.agreement import agreement_report
from preference.pairs import Pair
from preference.schema import PreferenceRecord
from preference.store import PreferenceStore
from rlhfkit.core.atomic import atomic_write_text
from rlhfkit.core.errors import InputError

log = logging.getLogger(__name__)


# -- projects --------------------------------------------------------------------------------------------------------
def open_project(client: LabelStudioClient, project: int | str) -> dict[str, Any]:
    """A project by id or title; refuses one whose labeling config is not rlhfkit's."""
    found = None
    if isinstance(project, int) or str(project).isdigit():
        found = client.project(int(project))
    else:
        found = next((p for p in client.projects() if p["title"] == project), None)
        if found is None:
            raise LabelStudioError(f"no project titled {project!r} on {client.url}")
    problem = config_problem(found.get("label_config", ""))
    if problem:
        raise LabelStudioError(f"project {found['title']!r} (id {found['id']}) is not an rlhfkit pairwise project: "
                               f"{problem}. rlhfkit will not push to or read from it.")
    return found


def ensure_project(client: LabelStudioClient, title: str, overlap: int = 1) -> dict[str, Any]:
    """The rlhfkit project `title`, created (with the config validated by the server) if missing.

    `overlap` = how many annotators should judge each task (Label Studio's `maximum_annotations`)."""
    if overlap < 1:
        raise InputError("overlap must be at least 1")
    existing = next((p for p in client.projects() if p["title"] == title), None)
    if existing is not None:
        project = open_project(client, existing["id"])
        if project.get("maximum_annotations") != overlap:
            project = client.update_project(project["id"], maximum_annotations=overlap)
        return project
    client.validate_config(LABEL_CONFIG)
    return client.create_project(title=title, label_config=LABEL_CONFIG, maximum_annotations=overlap,
                                 description="Pairwise preferences collected with rlhfkit", show_skip_button=True)


# -- push ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PushReport:
    project_id: int
    requested: int = 0  # distinct pairs asked for
    already_there: int = 0
    created: int = 0
    batches: int = 0
    recoveries: int = 0  # times the server went away and the push resumed


def existing_pair_ids(client: LabelStudioClient, project_id: int) -> set[str]:
    return {task["data"].get("pair_id") for task in client.tasks(project_id, fields="task_only")}


def push(
    client: LabelStudioClient,
    project_id: int,
    pairs: Iterable[Pair],
    *,
    seed: int = 0,
    batch_size: int = 100,
    preannotator: Annotator | None = None,
    max_recoveries: int = 3,
    on_batch: Callable[[int], None] | None = None,
) -> PushReport:
    """Send the pairs the project does not have yet. Pre-annotations only when `preannotator` is given (off by
    default: a pre-filled choice anchors annotators)."""
    unique = list({pair.pair_id: pair for pair in pairs}.values())
    report = PushReport(project_id, requested=len(unique))
    present = existing_pair_ids(client, project_id)
    report.already_there = sum(pair.pair_id in present for pair in unique)
    todo = [pair for pair in unique if pair.pair_id not in present]
    predictions: dict[str, PreferenceRecord] = {}
    if preannotator is not None and todo:
        for pair, record in zip(todo, preannotator.annotate(todo), strict=True):
            if record is not None:
                predictions[pair.pair_id] = record
    while todo:
        batch = todo[:batch_size]
        try:
            client.import_tasks(project_id, [make_task(p, seed, predictions.get(p.pair_id)) for p in batch])
        except LabelStudioUnavailable:
            if report.recoveries >= max_recoveries:
                raise
            report.recoveries += 1
            log.warning("push interrupted; waiting for Label Studio, then re-reading the project")
            present = existing_pair_ids(client, project_id)  # retried with backoff until the server is back
            todo = [pair for pair in todo if pair.pair_id not in present]
            continue
        report.created += len(batch)
        report.batches += 1
        todo = todo[batch_size:]
        if on_batch:
            on_batch(len(batch))
    return report


# -- pull ------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PullReport:
    project_id: int
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0  # cancelled / skipped by the annotator: not a label
    rejected: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    quarantine: str | None = None


def annotator_names(client: LabelStudioClient) -> Callable[[Any], str]:
    """Maps an annotation's `completed_by` user id to the annotator id of its records: email, else username, else
    user-<id>. Pull and status name people the same way through it."""
    names = {user["id"]: user.get("email") or user.get("username") or f"user-{user['id']}" for user in client.users()}
    return lambda user_id: names.get(user_id, f"user-{user_id}")


def _state_path(store: PreferenceStore, client: LabelStudioClient, project_id: int) -> Path:
    host = client.url.split("://", 1)[-1].replace(":", "_").replace("/", "_")
    return store.path / "labelstudio" / f"{host}-project-{project_id}.json"


def source_name(project_id: int) -> str:
    return f"labelstudio:project-{project_id}"


def pull(client: LabelStudioClient, project_id: int, store: PreferenceStore) -> PullReport:
    """Append new and edited judgments of the project to `store`."""
    open_project(client, project_id)
    report = PullReport(project_id)
    state_file = _state_path(store, client, project_id)
    seen: dict[str, str] = json.loads(state_file.read_text()) if state_file.exists() else {}
    annotator_of = annotator_names(client)
    records: list[PreferenceRecord] = []
    for task in client.tasks(project_id):
        for annotation in task.get("annotations", []):
            key, stamp = str(annotation["id"]), str(annotation.get("updated_at"))
            if seen.get(key) == stamp:
                report.unchanged += 1
                continue
            edited = key in seen
            seen[key] = stamp
            if annotation.get("was_cancelled"):
                report.skipped += 1
                continue
            annotator = annotator_of(annotation.get("completed_by"))
            try:
                records.append(record_of_annotation(task, annotation, annotator, source_name(project_id)))
            except ResultError as exc:
                report.rejected.append({"task": task["id"], "annotation": annotation["id"], "annotator": annotator,
                                        "reason": str(exc), "result": annotation.get("result")})
                continue
            if edited:
                report.updated += 1
            else:
                report.new += 1
    store.append(records, note=f"pull {source_name(project_id)} from {client.url}")
    if report.rejected:
        target = store.path / "quarantine" / f"labelstudio-project-{project_id}.rejected.jsonl"
        old = target.read_text() if target.exists() else ""
        atomic_write_text(target, old + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.rejected))
        report.quarantine = str(target)
    # After the append: a crash in between only means the next pull writes the same judgments again, which
    # supersede themselves (same judgment ids) — nothing is lost or counted twice.
    atomic_write_text(state_file, json.dumps(seen))
    return report


# -- status ----------------------------------------------------------------------------------------------------------
def status(client: LabelStudioClient, project_id: int) -> dict[str, Any]:
    """Progress, per-annotator counts, agreement so far, and the pairs annotators disagree on."""
    project = open_project(client, project_id)
    overlap = project.get("maximum_annotations") or 1
    annotator_of = annotator_names(client)
    tasks = list(client.tasks(project_id))
    records, per_annotator, skipped = [], Counter(), 0
    for task in tasks:
        for annotation in task.get("annotations", []):
            annotator = annotator_of(annotation.get("completed_by"))
            if annotation.get("was_cancelled"):
                skipped += 1
                continue
            per_annotator[annotator] += 1
            try:
                records.append(record_of_annotation(task, annotation, annotator, source_name(project_id)))
            except ResultError:
                continue
    labelled = Counter(record.item for record in records)
    by_unit: dict[str, set[str]] = {}
    for record in records:
        by_unit.setdefault(record.item or "", set()).add(record.label.value)
    disagreements = sorted(item for item, labels in by_unit.items() if len(labels) > 1)
    return {
        "project": {"id": project["id"], "title": project["title"], "overlap": overlap},
        "tasks": len(tasks),
        "tasks_started": sum(1 for count in labelled.values() if count),
        "tasks_complete": sum(1 for count in labelled.values() if count >= overlap),
        "annotations": len(records),
        "skipped": skipped,
        "per_annotator": dict(per_annotator),
        "agreement": agreement_report(records).to_dict() if records else None,
        "disagreements": [{"task": int(item), "labels": sorted(by_unit[item])} for item in disagreements],
    }
