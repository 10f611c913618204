"""A DSPy adapter for small local models and single-output signatures.

DSPy's ChatAdapter asks the model to write `[[ ## field ## ]]` markers and JSONAdapter asks for JSON; a 135M model
does neither reliably (stanfordnlp/dspy#1876), so every call fails to parse. PlainAdapter asks for the one output
value in plain words and reads it back: a `Literal` output takes the option the answer names first, `bool` / `int`
/ `float` the first matching token, `str` the whole answer. Signatures with several outputs need ChatAdapter or
JSONAdapter and a bigger model (docs/dspy.md says which fits which size).
"""

from __future__ import annotations

import re
import typing
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError


def _only_output(signature: type[dspy.Signature]) -> tuple[str, Any]:
    outputs = list(signature.output_fields.items())
    if len(outputs) != 1:
        raise ValueError(f"PlainAdapter handles signatures with one output field; {signature.__name__} has "
                         f"{len(outputs)} ({', '.join(name for name, _ in outputs)}). Use dspy.ChatAdapter with a "
                         "larger model.")
    name, field = outputs[0]
    return name, field.annotation


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _options(annotation: Any) -> list[str] | None:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(option) for option in typing.get_args(annotation)]
    return None


class PlainAdapter(dspy.Adapter):
    """Plain-text prompts and answers for one output field (see module docstring)."""

    def format(self, signature: type[dspy.Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]
               ) -> list[dict[str, Any]]:
        name, annotation = _only_output(signature)
        options = _options(annotation)
        ask = f"Reply with the {_title(name).lower()} only"
        ask += f": one of {', '.join(options)}." if options else "."
        messages = [{"role": "system", "content": f"{signature.instructions.strip()}\n\n{ask}"}]
        for demo in demos:
            if all(key in demo for key in signature.input_fields) and name in demo:
                messages.append({"role": "user", "content": self._user(signature, demo)})
                messages.append({"role": "assistant", "content": str(demo[name])})
        messages.append({"role": "user", "content": self._user(signature, inputs)})
        return messages

    @staticmethod
    def _user(signature: type[dspy.Signature], values: dict[str, Any]) -> str:
        parts = [f"{_title(key)}:\n{values[key]}" for key in signature.input_fields if key in values]
        name, _ = _only_output(signature)
        return "\n\n".join(parts) + f"\n\n{_title(name)}:"

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        name, annotation = _only_output(signature)
        text = completion.strip()
        options = _options(annotation)
        value: Any = None
        if options:
            found = []
            for option in options:
                match = re.search(rf"(?<![\w]){re.escape(option)}(?![\w])", text, flags=re.IGNORECASE)
                if match:
                    found.append((match.start(), -len(option), option))
            value = min(found)[2] if found else None
            value = typing.get_args(annotation)[[str(o) for o in typing.get_args(annotation)].index(value)] \
                if value is not None else None
        elif annotation is bool:
            match = re.search(r"\b(yes|no|true|false)\b", text, flags=re.IGNORECASE)
            value = None if match is None else match.group(1).lower() in ("yes", "true")
        elif annotation in (int, float):
            match = re.search(r"-?\d+(?:\.\d+)?", text)
            value = None if match is None else annotation(float(match.group()))
        elif text:
            value = text
        if value is None:
            raise AdapterParseError(adapter_name="PlainAdapter", signature=signature, lm_response=completion,
                                    message=f"no {name} found in the answer")
        return {name: value}
