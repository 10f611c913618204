"""One way to turn (prompt, response) into token ids, shared by training and scoring so they never disagree.

- Decoder models with a chat template (SmolLM2, ...): the prompt as chat messages plus the response as the
  assistant turn, through the tokenizer's chat template (as TRL does for conversational data).
- Encoders (MiniLM, BERT, ...): the tokenizer's pair encoding, `[CLS] prompt [SEP] response [SEP]`, chat prompts
  flattened to "role: content" lines.

Over-long pairs are truncated instead of dropped (TRL's RewardTrainer silently filters pairs longer than
`max_length`): the prompt loses tokens from its start (the latest turns matter most), and only if the response
alone is too long does it lose its end. `Encoded.truncated` says which happened, so training can report counts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from preference.schema import Prompt
from rlhfkit.core.errors import InputError

# Never cut the prompt below this many tokens when the response is long: the reward must still see the question.
MIN_PROMPT_TOKENS = 32


@dataclasses.dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    truncated: str | None  # None, "prompt" (start cut) or "response" (end cut; the prompt was cut too)


def flatten(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{message['role']}: {message['content']}" for message in prompt)


def uses_chat_template(tokenizer: Any) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def _messages(prompt: Prompt) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]], response: str) -> tuple[list[int], int]:
    """Ids of the whole conversation and where the assistant's answer starts."""
    prefix = _ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    full = _ids(tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}], tokenize=True))
    return full, len(prefix)


def _ids(value: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding (a mapping) where 4.x returned a plain list.
    return list(value["input_ids"] if hasattr(value, "keys") else value)


def encode(tokenizer: Any, prompt: Prompt, response: str, max_length: int) -> Encoded:
    """Token ids for one (prompt, response), at most `max_length` long (see module docstring)."""
    if max_length < MIN_PROMPT_TOKENS * 2:
        raise InputError(f"max_length must be at least {MIN_PROMPT_TOKENS * 2}, not {max_length}")
    if uses_chat_template(tokenizer):
        ids, split = _chat_ids(tokenizer, _messages(prompt), response)
        if len(ids) <= max_length:
            return Encoded(ids, None)
        head_keep = min(split, 1)  # keep the very first token (BOS or <|im_start|>) as the model saw it in training
        prompt_ids, response_ids = ids[:split], ids[split:]
        room = max_length - len(response_ids)
        if room >= MIN_PROMPT_TOKENS:
            return Encoded(prompt_ids[:head_keep] + prompt_ids[len(prompt_ids) - (room - head_keep):] + response_ids,
                           "prompt")
        tail_start = max(head_keep, len(prompt_ids) - (MIN_PROMPT_TOKENS - head_keep))  # short prompts stay whole
        kept_prompt = prompt_ids[:head_keep] + prompt_ids[tail_start:]
        return Encoded(kept_prompt + response_ids[: max_length - len(kept_prompt)], "response")
    # Encoder: pair encoding; "only_first" cuts the prompt, "longest_first" then also cuts the response.
    text = flatten(prompt)
    # verbose=False: these only count tokens before truncating; transformers would warn about lengths over 512.
    prompt_len = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    response_len = len(tokenizer(response, add_special_tokens=False, verbose=False)["input_ids"])
    special = tokenizer.num_special_tokens_to_add(pair=True)
    if prompt_len + response_len + special <= max_length:
        return Encoded(tokenizer(text, response)["input_ids"], None)
    room = max_length - special - response_len
    if room >= MIN_PROMPT_TOKENS:
        # Keep the END of the prompt: tokenizers truncate from the right, so cut its start ourselves.
        prompt_ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"][-room:]
        text = tokenizer.decode(prompt_ids)
        ids = tokenizer(text, response, truncation="only_first", max_length=max_length)["input_ids"]
        return Encoded(ids, "prompt")
    prompt_ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"][-MIN_PROMPT_TOKENS:]
    ids = tokenizer(tokenizer.decode(prompt_ids), response, truncation="only_second", max_length=max_length)
    return Encoded(ids["input_ids"], "response")
