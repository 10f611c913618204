"""Supervised fine-tuning on instruction data with TRL's `SFTTrainer`: `train_sft(rows, SFTTrainingConfig(...))`.

Rows are prompt/completion pairs (`prompt` as text or chat messages, `completion` as text) or whole chats
(`messages`). Every prompt is formatted with the chat template (and the optional system prompt) as in generation,
and by default only the answer's tokens are learned (`completion_only_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from policy.config import SFTTrainingConfig
from policy.model import load_policy_tokenizer, load_weights, messages_of
from policy.training import (
    callbacks,
    peft_config,
    prepare_output,
    train_and_save,
    trl_common_args,
)
from preference.errors import DataError, Issue
from rlhfkit.core.errors import InputError


def sft_rows(rows: Sequence[dict[str, Any]], system_prompt: str | None = None, where: str = "data"
             ) -> list[dict[str, Any]]:
    """Conversational prompt/completion rows for TRL; raises `DataError` naming each bad row and field."""
    out, issues = [], []
    for line, row in enumerate(rows, start=1):
        if "messages" in row:
            messages = row["messages"]
            if not (isinstance(messages, list) and messages and messages[-1].get("role") == "assistant"):
                issues.append(Issue(where, line, "messages", "must be a chat ending with an assistant message"))
                continue
            out.append({"prompt": messages_of(messages[:-1], system_prompt), "completion": [messages[-1]]})
            continue
        prompt, completion = row.get("prompt"), row.get("completion")
        if not prompt:
            issues.append(Issue(where, line, "prompt", "is missing or empty"))
        if not isinstance(completion, str) or not completion.strip():
            issues.append(Issue(where, line, "completion", "must be a non-empty string"))
        if prompt and isinstance(completion, str) and completion.strip():
            out.append({"prompt": messages_of(prompt, system_prompt),
                        "completion": [{"role": "assistant", "content": completion}]})
    if issues:
        raise DataError(issues, f"{where}: {len(issues)} problem(s) in the SFT data")
    if not out:
        raise InputError(f"{where}: no SFT examples")
    return out


def read_sft_file(path: str | Path) -> list[dict[str, Any]]:
    """JSONL rows with prompt + completion, or messages; raises `DataError` naming each unreadable line."""
    from preference.readers import read_jsonl

    rows, issues = [], []
    for raw in read_jsonl(Path(path)):
        if raw.issue is not None or raw.data is None:
            issues += [raw.issue] if raw.issue else []
        else:
            rows.append(raw.data)
    if issues:
        raise DataError(issues, f"{path}: {len(issues)} problem(s)")
    return rows


def train_sft(rows: Sequence[dict[str, Any]], config: SFTTrainingConfig | None = None, where: str = "data"
              ) -> dict[str, Any]:
    """Fine-tune the policy on `rows`; returns the run summary (also in `<output_dir>/summary.json`)."""
    config = config or SFTTrainingConfig()
    config.validate()
    examples = sft_rows(rows, config.system_prompt, where)
    tokenizer = load_policy_tokenizer(config.model, config.chat_template, padding_side="right")
    torch.manual_seed(config.seed)
    model = load_weights(config.model)  # an adapter folder comes merged
    args = SFTConfig(**trl_common_args(config), max_length=config.max_length,
                     completion_only_loss=config.completion_only_loss)
    prepare_output(config)  # after the TRL arguments: they set up the distributed state it uses
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples), processing_class=tokenizer,
                         peft_config=peft_config(config), callbacks=callbacks())
    return train_and_save(trainer, config, "sft", {"examples": len(examples)},
                          ["loss", "mean_token_accuracy", "grad_norm"])
