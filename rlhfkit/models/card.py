"""Model cards: a README.md with Hugging Face YAML metadata in every model folder rlhfkit saves, as TRL's trainers
write one, so a folder can be pushed to the Hub as it is (`huggingface-cli upload NAME FOLDER`).

The card is rendered from `rlhfkit_card.json` beside it: training writes that state, and `rlhfkit reward eval`
adds its evaluation (accuracy with its interval) and renders the card again, so the card always shows every
evaluation of the model. Rendering uses `huggingface_hub.ModelCard` (its metadata block is what the Hub reads).
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from rlhfkit.core.atomic import atomic_write_text

STATE_FILE = "rlhfkit_card.json"
CARD_FILE = "README.md"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def invoked_command() -> str:
    """The command line that is running, as a user would type it again."""
    program = Path(sys.argv[0]).name
    return shlex.join(["rlhfkit", *sys.argv[1:]] if program == "rlhfkit" else [program, *sys.argv[1:]])


def hub_base_model(model: str) -> str | None:
    """The Hub id of a base model given as a bundled name, a Hub id or a folder (None for a local folder)."""
    from rlhfkit.models.registry import KNOWN

    if model in KNOWN:
        return KNOWN[model].hub_id
    if _HUB_ID.match(model) and not Path(model).exists():
        return model
    return None


def write_model_card(folder: str | Path, *, kind: str, method: str, base_model: str, adapter: bool = False,
                     sources: list[str] | None = None, metrics: dict[str, Any] | None = None,
                     usage: str = "", command: str | None = None) -> Path:
    """Write (or rewrite) `folder`/README.md for a freshly trained model and keep its state for later updates.
    `kind`: "reward model" or "policy"; `metrics`: name -> value (training metrics); `usage`: a Python snippet."""
    folder = Path(folder)
    state = {"kind": kind, "method": method, "base_model": base_model, "adapter": adapter,
             "sources": sorted(set(sources or [])), "metrics": _plain(metrics or {}), "usage": usage,
             "command": command or invoked_command(), "evaluations": []}
    atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=1))
    return render(folder)


def add_evaluation(folder: str | Path, evaluation: dict[str, Any]) -> Path | None:
    """Record one evaluation (name, n, accuracy, ci_low, ci_high, ece, data, command) in the card of `folder`;
    None when the folder has no rlhfkit card (a model trained elsewhere is left untouched)."""
    folder = Path(folder)
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    entry = _plain({**evaluation, "command": evaluation.get("command") or invoked_command()})
    state["evaluations"] = [e for e in state["evaluations"] if e.get("data") != entry.get("data")] + [entry]
    atomic_write_text(path, json.dumps(state, indent=1))
    return render(folder)


def render(folder: Path) -> Path:
    from huggingface_hub import ModelCard, ModelCardData

    state = json.loads((folder / STATE_FILE).read_text())
    base = hub_base_model(state["base_model"])
    hub_datasets = [source for source in state["sources"] if _HUB_ID.match(source)]
    tags = ["rlhfkit", "trl", state["method"], "reward-model" if state["kind"] == "reward model" else "rlhf"]
    data = ModelCardData(base_model=base, library_name="peft" if state["adapter"] else "transformers",
                         tags=list(dict.fromkeys(tags)), datasets=hub_datasets or None,
                         rlhfkit_metrics={**state["metrics"],
                                          **{f"eval/{e['data']}": {k: e.get(k) for k in
                                                                   ("accuracy", "ci_low", "ci_high", "n", "ece")}
                                             for e in state["evaluations"]}} or None)
    lines = [f"# {state['kind'].capitalize()} ({state['method']}) fine-tuned from {state['base_model']}", "",
             f"Trained with rlhfkit (on TRL) from `{state['base_model']}`"
             + (" (LoRA adapter)." if state["adapter"] else "."), "", "## How it was made", "", "```bash",
             state["command"], "```", ""]
    if state["sources"]:
        lines += ["Preference data sources: " + ", ".join(f"`{s}`" for s in state["sources"]) + ".", ""]
    if state["metrics"]:
        lines += ["## Training", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in state["metrics"].items()]
        lines += [""]
    if state["evaluations"]:
        lines += ["## Evaluation", "",
                  "Pairwise accuracy on decisive pairs, 95% bootstrap interval over prompt groups.", "",
                  "| data | pairs | accuracy | 95% interval | ECE |", "|---|---|---|---|---|"]
        for e in state["evaluations"]:
            lines.append(f"| `{e['data']}` | {e.get('n')} | {_fmt(e.get('accuracy'))} | "
                         f"{_fmt(e.get('ci_low'))} - {_fmt(e.get('ci_high'))} | {_fmt(e.get('ece'))} |")
        lines += [""]
    if state["usage"]:
        lines += ["## Use", "", "```python", state["usage"].strip(), "```", ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    atomic_write_text(folder / CARD_FILE, str(card))
    return folder / CARD_FILE


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready: numbers and short text only."""
    return {k: v for k, v in values.items() if isinstance(v, int | float | str | bool) or v is None}
