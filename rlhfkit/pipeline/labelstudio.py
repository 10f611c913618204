"""The pipeline's label stage with people: pairs go to a Label Studio project, the run waits (a live progress bar)
while annotators label, and the judgments come back into the run's preference store.

The server is the one LABEL_STUDIO_URL + LABEL_STUDIO_API_KEY name, else the one `rlhfkit annotate serve` started,
else a local one this stage starts for as long as it waits (stopped with SIGTERM). Pushing and pulling are
idempotent, so stopping (Ctrl-C, `wait: false`, the timeout) loses nothing: a rerun pushes nothing twice, pulls what
is new, and waits for the rest.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from annotation.labelstudio.client import LabelStudioClient
from annotation.labelstudio.server import LocalServer, connect_running
from annotation.labelstudio.sync import ensure_project, pull, push
from preference.store import PreferenceStore, replace_preferences

if TYPE_CHECKING:
    from rlhfkit.pipeline.stages import Context


class LabelingPending(RuntimeError):
    """People are still labeling in Label Studio: the run stops here and a rerun continues."""


@contextlib.contextmanager
def _client(ctx: Context) -> Iterator[LabelStudioClient]:
    client = connect_running()
    if client is not None:
        yield client
        return
    server = LocalServer(port=ctx.config.label.labelstudio.port)
    ctx.console.print("starting a local Label Studio (the first start migrates its database, ~30 s)")
    client = server.start()
    try:
        yield client
    finally:
        server.stop()


def project_title(ctx: Context) -> str:
    """The configured title, else one per work folder: runs never share tasks or labels."""
    return ctx.config.label.labelstudio.project or f"rlhfkit run: {ctx.work.resolve()}"


def label_in_label_studio(ctx: Context, pairs: list[Any], store: Path) -> None:
    """Push `pairs`, wait for labels as configured, pull them into `store`; raise `LabelingPending` if unfinished.

    Everything the project holds is pulled into a mirror store (`labelstudio-store/`, pulled incrementally); `store`
    gets the judgments of this run's pairs only, so tasks left in a shared project from other runs never leak in."""
    spec = ctx.config.label.labelstudio
    ids = {pair.pair_id for pair in pairs}
    with _client(ctx) as client:
        project = ensure_project(client, project_title(ctx), spec.overlap)
        report = push(client, project["id"], pairs, seed=ctx.config.seed)
        link = f"{client.url}/projects/{project['id']}/data"
        ctx.console.print(f"Label Studio project {project['title']!r}: {report.created} new task(s), "
                          f"{report.already_there} already there; label at [link={link}]{link}[/link]")
        overlap = project.get("maximum_annotations") or spec.overlap
        done = _wait(ctx, client, project["id"], ids, overlap) if spec.wait else _progress(
            client, project["id"], ids, overlap)
        mirror = PreferenceStore(store.with_name("labelstudio-store"))
        pull(client, project["id"], mirror)
    mine = [record for record in mirror.records() if record.pair_id in ids]
    replace_preferences(store, lambda tmp: tmp.append(mine))
    if done < len(ids):
        raise LabelingPending(f"{done} of {len(ids)} pairs are labeled in Label Studio ({link}); the labels so far "
                              "are saved. Rerun `rlhfkit run` to continue waiting")


def _progress(client: LabelStudioClient, project_id: int, ids: set[str], overlap: int) -> int:
    """This run's tasks that are done: labeled or skipped by as many annotators as the overlap asks (a skipped pair
    is an annotator's answer too; waiting for it would never end)."""
    done = 0
    for task in client.tasks(project_id):
        if task["data"].get("pair_id") in ids and len(task.get("annotations") or []) >= overlap:
            done += 1
    return done


def _wait(ctx: Context, client: LabelStudioClient, project_id: int, ids: set[str], overlap: int) -> int:
    spec = ctx.config.label.labelstudio
    started = time.monotonic()
    total = len(ids)
    done = _progress(client, project_id, ids, overlap)
    with ctx.progress() as progress:
        task = progress.add_task("waiting for annotators (Ctrl-C stops; a rerun continues)", total=total,
                                 completed=done)
        while done < total and (spec.timeout_s is None or time.monotonic() - started < spec.timeout_s):
            time.sleep(spec.poll_s)
            done = _progress(client, project_id, ids, overlap)
            progress.update(task, completed=done)
    return done
