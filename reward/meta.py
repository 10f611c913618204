"""`rlhfkit_reward.json`: what a saved reward model needs besides its weights, so scoring formats text exactly as
training did."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from rlhfkit.core.atomic import atomic_write_text

FILE = "rlhfkit_reward.json"


@dataclasses.dataclass
class RewardMeta:
    backbone: str  # the model it was trained from (short name, path or hub id)
    max_length: int  # the token limit training used; scoring truncates the same way (reward.text.encode)
    temperature: float = 1.0  # calibration: P(a > b) = sigmoid((r_a - r_b) / temperature)
    lora: bool = False  # saved as a PEFT adapter (with its score head in modules_to_save) on top of `backbone`
    pooling: str | None = None  # "mean" or "model" (reward.pooling); None: as the model's config.json says
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # training facts (data, counts, seed, ...)

    def save(self, folder: str | Path) -> None:
        atomic_write_text(Path(folder) / FILE, json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> RewardMeta | None:
        path = Path(folder) / FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls) if field.name in data})
