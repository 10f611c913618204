"""Local transformers models as DSPy language models, through DSPy 3.4's engine API (`dspy.LM(..., engine=...)`).

The bundled SmolLM2 (or any causal LM folder / Hugging Face id in the local cache) answers DSPy modules offline:
the engine applies the model's chat template, generates (greedy unless a temperature is given) and returns a
canonical `dspy.lm15.Response`. DSPy keeps owning caching, retries and history. dspy is imported lazily: most of
rlhfkit never needs it.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

from rlhfkit.core.errors import InputError
from rlhfkit.models.causal_lm import load_causal_lm, serve_local, weights_stamp
from rlhfkit.models.registry import resolve_model

DEFAULT_MAX_NEW_TOKENS = 256


class TransformersEngine:
    """A DSPy engine (complete / stream / close) over a local causal LM, loaded on first use."""

    def __init__(self, model: str = "smollm2-135m-instruct", *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 device: str | None = None, dtype: torch.dtype | None = None):
        self.model_name = model
        self.max_new_tokens = max_new_tokens
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype
        self._loaded: tuple[Any, Any] | None = None
        # DSPy's Evaluate and optimizers call from several threads; one generate at a time keeps memory bounded.
        self._lock = threading.Lock()

    def load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from transformers import AutoTokenizer

            path = resolve_model(self.model_name)
            tokenizer = AutoTokenizer.from_pretrained(path)
            if tokenizer.chat_template is None:
                raise InputError(f"{self.model_name}: the tokenizer has no chat template; DSPy's chat messages need "
                                 "one (use an instruct model)")
            model = load_causal_lm(path, self.dtype or "auto").to(self.device).eval()
            self._loaded = (model, tokenizer)
        return self._loaded

    @staticmethod
    def messages_of(request: Any) -> list[dict[str, str]]:
        messages = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        return messages

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int | None = None,
                 temperature: float | None = None, stop: tuple[str, ...] = ()) -> tuple[str, int, int, str]:
        """(text, input tokens, output tokens, finish reason) for one chat."""
        model, tokenizer = self.load()
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True).to(self.device)
        sampling = {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
        limit = max_new_tokens or self.max_new_tokens
        with self._lock, torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=limit, pad_token_id=tokenizer.pad_token_id,
                                    **sampling)
        new_tokens = output[0, inputs["input_ids"].shape[1]:]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        for marker in stop:
            if marker and marker in text:
                text = text[: text.index(marker)]
        finish = "length" if len(new_tokens) >= limit else "stop"
        return text, int(inputs["input_ids"].shape[1]), int(len(new_tokens)), finish

    # -- the DSPy engine contract ---------------------------------------------------------------------------------
    def complete(self, request: Any) -> Any:
        from dspy.clients.engines.base import validate_request
        from dspy.lm15 import Message, Response, TextPart, Usage

        validate_request(request)
        config = request.config
        text, n_in, n_out, finish = self.generate(self.messages_of(request), config.max_tokens, config.temperature,
                                                  tuple(config.stop or ()))
        return Response(id=None, model=self.model_name, message=Message.assistant([TextPart(text)]),
                        finish_reason=finish, usage=Usage(input_tokens=n_in, output_tokens=n_out,
                                                          total_tokens=n_in + n_out))

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        self._loaded = None


def local_lm(model: str = "smollm2-135m-instruct", *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
             cache: bool = True, **engine_kwargs: Any) -> Any:
    """A `dspy.LM` answered by a local model: `dspy.configure(lm=local_lm())`."""
    import dspy

    engine = TransformersEngine(model, max_new_tokens=max_new_tokens, **engine_kwargs)
    return dspy.LM(f"local/{model}{weights_stamp(model)}", engine=engine, cache=cache, max_tokens=max_new_tokens)


def served_lm(model: str = "smollm2-135m-instruct", *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
              cache: bool = True) -> Any:
    """A `dspy.LM` answered by a local model served by vLLM (`rlhfkit.models.vllm_server`) through LiteLLM's
    OpenAI-compatible route, so DSPy's own caching, retries and threads apply. Greedy unless a call says otherwise,
    like the in-process engine; the served name carries the weights' digest, so DSPy's cache never answers for a
    model retrained in place."""
    import os

    import dspy

    # LiteLLM (under dspy.LM) would fetch its model price list from the internet; its bundled copy does here.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    server = serve_local(model)
    return dspy.LM(f"openai/{server.served_name}", api_base=f"{server.url}/v1", api_key="local", model_type="chat",
                   temperature=0.0, max_tokens=max_new_tokens, cache=cache, num_retries=2)


def local_dspy_lm(model: str, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, backend: str = "auto") -> Any:
    """A `dspy.LM` over a local model: served by vLLM (`backend` auto with the engine installed, or
    "vllm-server"), else the in-process transformers engine. `auto` falls back to transformers, logged, when the
    engine does not start."""
    import logging

    from rlhfkit.models import vllm_server

    if backend == "vllm-server" or (backend == "auto" and vllm_server.installed()):
        try:
            return served_lm(model, max_new_tokens=max_new_tokens)
        except vllm_server.EngineError as exc:
            if backend != "auto":
                raise
            logging.getLogger(__name__).warning("the vLLM engine did not start, answering with transformers: %s",
                                                str(exc).splitlines()[0])
    return local_lm(model, max_new_tokens=max_new_tokens)


def is_served(lm: Any) -> bool:
    """Whether a dspy.LM is answered by a server (threads help) rather than the in-process engine (one at a time)."""
    return str(getattr(lm, "model", "")).startswith("openai/") and "api_base" in getattr(lm, "kwargs", {})


def lm_and_adapter(spec: Any, *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, backend: str = "auto"
                   ) -> tuple[Any, Any]:
    """(dspy LM, adapter) for `spec`: a dspy.LM as is (adapter None: DSPy's default); a bundled short name or
    `local:PATH_OR_ID` -> a local model (`local_dspy_lm`, served by vLLM when installed) with PlainAdapter (small
    models break DSPy's field markers); anything else is a LiteLLM model string ("openai/gpt-4o-mini") with
    ChatAdapter."""
    import dspy

    from rlhfkit.lm.plain_adapter import PlainAdapter
    from rlhfkit.models.registry import KNOWN

    if not isinstance(spec, str):
        return spec, None
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM's bundled price list: no download
    if spec in KNOWN or spec.startswith("local:"):
        return local_dspy_lm(spec.removeprefix("local:"), max_new_tokens=max_new_tokens, backend=backend), \
            PlainAdapter()
    return dspy.LM(spec), dspy.ChatAdapter()
