"""People in a Label Studio project as the active loop's annotator.

People label when they can, not when the loop asks: `annotate` pushes the round's pairs as tasks (idempotent) and
returns the judgments finished so far. When fewer than `min_labeled` of the pairs are labeled after waiting `wait`
seconds, it raises `LabelsPending`: the round is left unfinished, and rerunning the loop (after people have
labeled) picks it up with the same pairs. Nothing is lost meanwhile: the labels live in Label Studio.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from annotation.labelstudio.client import LabelStudioClient
from annotation.labelstudio.config import ResultError
from annotation.labelstudio.sync import annotator_names, open_project, push, source_name
from annotation.labelstudio.tasks import record_of_annotation
from preference.pairs import Pair
from preference.schema import PreferenceRecord
from rlhfkit.core.errors import RlhfkitError


class LabelsPending(RlhfkitError):
    """A round's pairs are in Label Studio but not labeled enough yet; rerun the same command once they are."""


class LabelStudioPeople:
    """The judgments people give in project `project` (an id or title) of the server `client` talks to.

    Unlike the machine annotators, `annotate` returns every finished judgment of the pairs (several per pair when
    the project's overlap asks for several people), in no particular order; cancelled (skipped) tasks give none.
    `min_labeled`: the share of the pairs that must have at least one judgment before a round goes on (1.0: all);
    `wait`: seconds to keep polling for it (0: look once); `seed`: the A/B position shuffle of pushed tasks."""

    def __init__(self, client: LabelStudioClient, project: int | str, *, min_labeled: float = 1.0,
                 wait: float = 0.0, poll: float = 10.0, seed: int = 0):
        if not 0.0 < min_labeled <= 1.0:
            raise ValueError(f"min_labeled must be in (0, 1], not {min_labeled}")
        self.client, self.min_labeled, self.wait, self.poll, self.seed = client, min_labeled, wait, poll, seed
        self.project = open_project(client, project)
        self.name = source_name(self.project["id"])

    @property
    def url(self) -> str:
        return f"{self.client.url}/projects/{self.project['id']}/data"

    def finished(self, pairs: Sequence[Pair]) -> list[PreferenceRecord]:
        """The judgments the project holds of `pairs` now (malformed results are left to `annotate pull`, which
        quarantines them with a reason)."""
        wanted = {pair.pair_id for pair in pairs}
        annotator_of = annotator_names(self.client)
        records = []
        for task in self.client.tasks(self.project["id"]):
            if task["data"].get("pair_id") not in wanted:
                continue
            for annotation in task.get("annotations", []):
                if annotation.get("was_cancelled"):
                    continue
                try:
                    records.append(record_of_annotation(task, annotation, annotator_of(annotation.get("completed_by")),
                                                        self.name))
                except ResultError:
                    continue
        return records

    def annotate(self, pairs: Sequence[Pair]) -> list[PreferenceRecord]:
        push(self.client, self.project["id"], pairs, seed=self.seed)
        need = max(1, round(self.min_labeled * len({pair.pair_id for pair in pairs}))) if pairs else 0
        deadline = time.monotonic() + self.wait
        while True:
            records = self.finished(pairs)
            labeled = len({record.pair_id for record in records})
            if labeled >= need:
                return records
            if time.monotonic() >= deadline:
                raise LabelsPending(f"{labeled} of {len(pairs)} pairs of this round are labeled in Label Studio "
                                    f"project {self.project['title']!r} (need {need}); label them at {self.url} "
                                    "and rerun the same command to go on")
            time.sleep(min(self.poll, max(0.0, deadline - time.monotonic())))
