"""vLLM two ways: its OpenAI-compatible server (the production path) and an in-process engine
for batch work (evals, datastore builds).

- `VLLMServerBackend`: `vllm serve` (or `python -m vllm.entrypoints.openai.api_server`)
  through litellm's `hosted_vllm` provider: streaming, logprobs, constrained output with
  vLLM's structured outputs, and the specguard tap switches in `vllm_xargs`.
- `VLLMServerProcess`: starts and stops a local vLLM server (tests, benchmarks, one box).
- `VLLMEngineBackend`: `vllm.v1` AsyncLLM in this process (its engine core runs in a child
  process). Concurrent calls batch together inside the engine; `hidden_states` reads the
  tap (specguard.vllm_plugin) when the engine was started with it.

vllm is imported only inside VLLMEngineBackend, so this module is light to import.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendError, BackendTimeoutError, ConfigError, InvalidRequestError, require
from ..types import (
    Capabilities,
    Completion,
    GenerationParams,
    Message,
    StreamChunk,
    TokenLogprob,
    Usage,
)
from ..vllm_plugin import RECORD_ROOT_ENV, TapSwitches, read_record, tap_engine_args
from ._template import template_token_ids
from .litellm import LiteLLMBackend

DEFAULT_URL_ENV = "SPECGUARD_VLLM_URL"


class VLLMServerBackend(LiteLLMBackend):
    """A vLLM OpenAI-compatible server. `model` is the served model name (what `GET /v1/models`
    lists); `api_base` its URL ending in /v1 (default: $SPECGUARD_VLLM_URL)."""

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        switches: TapSwitches | None = None,
        extra_body: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        api_base = api_base or os.environ.get(DEFAULT_URL_ENV)
        if not api_base:
            raise ConfigError(
                f"The vLLM backend for {model!r} needs the server's URL.",
                hint=f"Pass api_base='http://host:8000/v1' or set {DEFAULT_URL_ENV}.",
            )
        self.served_model = model.removeprefix("hosted_vllm/")
        body = dict(extra_body or {})
        if switches is not None and switches.active:
            body["vllm_xargs"] = {**body.get("vllm_xargs", {}), **switches.to_xargs()}
        super().__init__(
            f"hosted_vllm/{self.served_model}",
            api_base=api_base,
            constrained_output=True,
            extra_body=body,
            **options,
        )
        self.switches = switches
        self.name = f"vllm:{self.served_model}"

    def with_switches(self, switches: TapSwitches | None) -> VLLMServerBackend:
        """The same server with other tap switches (e.g. Goodtriever on for one policy).
        The server must run the tap: see specguard.vllm_plugin.tap_engine_args."""
        body = {k: v for k, v in self.extra_body.items() if k != "vllm_xargs"}
        return VLLMServerBackend(
            self.served_model, api_base=self.api_base, api_key=self.api_key, timeout=self.timeout,
            num_retries=self.num_retries, switches=switches, extra_body=body,
        )

    def _kwargs(self, messages: Sequence[Message], params: GenerationParams) -> dict[str, Any]:
        kw = super()._kwargs(messages, params)
        schema = kw.pop("response_format", None)
        if schema is not None:
            # vLLM's own field for guided decoding (the `guided_json` of older releases is gone
            # in 0.32); it travels untouched in the body, whatever litellm does to response_format.
            kw["extra_body"] = {
                **kw.get("extra_body", {}),
                "structured_outputs": {"json": params.json_schema},
            }
        return kw


class VLLMEngineBackend:
    """vLLM's engine in this process. `model`: a local Hugging Face folder (or any name the
    engine can load offline). With `tap=True` (default) the engine runs the specguard
    hidden-state tap, so `hidden_states` works and `switches` (recording, Goodtriever) apply to
    every request; the default switches can be replaced per backend with `with_switches`.

    Engine options go in `engine_args` (e.g. dtype="float32", enforce_eager=True,
    max_model_len=2048, tensor_parallel_size=2) and reach `AsyncEngineArgs` unchanged."""

    capabilities = Capabilities(
        streaming=True, logprobs=True, constrained_output=True, hidden_states=True
    )

    def __init__(
        self,
        model: str | Path,
        *,
        tap: bool = True,
        switches: TapSwitches | None = None,
        **engine_args: Any,
    ) -> None:
        self.model = str(model)
        self.name = f"vllm-engine:{Path(self.model).name}"
        self.tap = tap
        self.switches = switches
        self._engine_args = engine_args
        self._engine: Any = None
        self._tokenizer: Any = None
        self._lock = asyncio.Lock()
        self._shared: VLLMEngineBackend | None = None  # set on copies made by with_switches
        if not tap:
            self.capabilities = Capabilities(
                streaming=True, logprobs=True, constrained_output=True, hidden_states=False
            )

    def with_switches(self, switches: TapSwitches | None) -> VLLMEngineBackend:
        """A view of the same engine whose requests carry other switches."""
        view = VLLMEngineBackend(self.model, tap=self.tap, switches=switches, **self._engine_args)
        view._shared = self._shared or self
        return view

    # -- engine --------------------------------------------------------------------------------

    async def load(self) -> None:
        """Start the engine (tens of seconds on a CPU); later calls return at once."""
        owner = self._shared or self
        async with owner._lock:
            if owner._engine is None:
                owner._engine, owner._tokenizer = await asyncio.to_thread(owner._start)

    def _start(self):
        require("vllm", "vllm")
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = dict(self._engine_args)
        if self.tap:
            # The engine's processes inherit the environment: give recordings a home.
            os.environ.setdefault(RECORD_ROOT_ENV, tempfile.mkdtemp(prefix="specguard-tap-"))
            tap = tap_engine_args(self.model) if Path(self.model).is_dir() else {}
            if not tap:
                raise ConfigError(
                    f"The tap needs a local model folder to read its architecture; {self.model} "
                    "is not one.",
                    hint="Pass a Hugging Face folder, or tap=False.",
                )
            args.setdefault("hf_overrides", tap["hf_overrides"])
            args["logits_processors"] = [*args.get("logits_processors", []), *tap["logits_processors"]]
        try:
            engine = AsyncLLM.from_engine_args(AsyncEngineArgs(model=self.model, **args))
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"vLLM could not start {self.model}: {exc}") from exc
        tokenizer = AutoTokenizer.from_pretrained(self.model)
        return engine, tokenizer

    @property
    def _owner(self) -> VLLMEngineBackend:
        return self._shared or self

    async def _ready(self):
        await self.load()
        return self._owner._engine, self._owner._tokenizer

    # -- Backend -------------------------------------------------------------------------------

    def _prompt(self, tokenizer, messages: Sequence[Message]) -> dict[str, list[int]]:
        return {"prompt_token_ids": chat_token_ids(tokenizer, messages)}

    def _sampling(self, params: GenerationParams, kind: str, switches: TapSwitches | None = None):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        switches = switches or self.switches
        if switches is not None and switches.active and not self.tap:
            raise ConfigError("Tap switches need an engine started with tap=True.")
        kw: dict[str, Any] = dict(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
            output_kind=RequestOutputKind[kind],
        )
        if params.logprobs:
            kw["logprobs"] = max(params.top_logprobs, 0)
        if params.json_schema is not None:
            kw["structured_outputs"] = StructuredOutputsParams(json=params.json_schema)
        if switches is not None and switches.active:
            kw["extra_args"] = switches.to_xargs()
        return SamplingParams(**kw)

    async def complete(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        engine, tokenizer = await self._ready()
        prompt = self._prompt(tokenizer, messages)
        final = None
        async for out in engine.generate(prompt, self._sampling(params, "FINAL_ONLY"), _rid()):
            final = out
        if final is None:
            raise BackendError("vLLM returned no output.")
        return self._completion(final, params)

    async def complete_batch(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams
    ) -> list[Completion]:
        """Many conversations at once; the engine batches them (results in input order)."""
        return list(await asyncio.gather(*(self.complete(m, params) for m in conversations)))

    def _completion(self, out, params: GenerationParams) -> Completion:
        choice = out.outputs[0]
        return Completion(
            text=choice.text,
            finish_reason=choice.finish_reason or "stop",
            usage=Usage(
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(choice.token_ids),
            ),
            logprobs=_logprobs(choice, params.top_logprobs) if params.logprobs else None,
            model=self.name,
        )

    async def stream(
        self, messages: Sequence[Message], params: GenerationParams
    ) -> AsyncIterator[StreamChunk]:
        engine, tokenizer = await self._ready()
        prompt = self._prompt(tokenizer, messages)
        rid = _rid()
        n_prompt = len(prompt["prompt_token_ids"])
        n_out = 0
        finish = None
        done = False
        try:
            async for out in engine.generate(prompt, self._sampling(params, "DELTA"), rid):
                choice = out.outputs[0]
                n_out += len(choice.token_ids)
                if choice.text:
                    yield StreamChunk(text=choice.text)
                if choice.finish_reason:
                    finish = choice.finish_reason
            done = True
        finally:
            if not done:  # the consumer went away: stop generating
                await engine.abort(rid)
        yield StreamChunk(
            finish_reason=finish or "stop",
            usage=Usage(prompt_tokens=n_prompt, completion_tokens=n_out),
        )

    async def hidden_states(
        self, texts: Sequence[str], *, chat: bool = False, last_token: bool = True
    ) -> list[list[float]]:
        """The final normalised hidden state of each text's last token, read by the tap while
        the engine samples one token after the text."""
        if not self.tap:
            raise ConfigError("hidden_states needs an engine started with tap=True.")
        if not last_token:
            raise InvalidRequestError(
                "The vLLM tap sees only the rows vLLM samples from, so it gives the last "
                "token's state, not a mean over tokens.",
                hint="Call with last_token=True, or use the embedded or torch backend.",
            )
        engine, tokenizer = await self._ready()
        root = Path(os.environ[RECORD_ROOT_ENV])

        async def one(text: str) -> list[float]:
            if chat:
                prompt = self._prompt(tokenizer, [Message(role="user", content=text)])
            else:
                prompt = {"prompt_token_ids": _token_ids(tokenizer, text, special=False)}
            name = f"hs-{uuid.uuid4().hex}"
            sp = self._sampling(
                GenerationParams(max_tokens=1), "FINAL_ONLY", TapSwitches(record=name)
            )
            async for _ in engine.generate(prompt, sp, _rid()):
                pass
            record = read_record(name, root)
            for suffix in (".prompt.i32", ".keys.f32", ".last.i32"):
                (root / f"{name}{suffix}").unlink(missing_ok=True)
            return record.keys[0].tolist()

        return list(await asyncio.gather(*(one(t) for t in texts)))

    async def aclose(self) -> None:
        if self._shared is None and self._engine is not None:
            self._engine.shutdown()
            self._engine = None


class VLLMServerProcess:
    """A local `vllm.entrypoints.openai.api_server` child process (tests, benchmarks, a
    single-box deployment): started with `start()`, ready after `wait_ready()`, stopped with
    its engine processes by `stop()`; also a context manager.

    `python` is the interpreter of the environment vLLM is installed in (it may differ from
    this one); `tap=True` adds the specguard tap flags; `args` are more server flags."""

    def __init__(
        self,
        model: str | Path,
        *,
        python: str | Path = "python",
        served_name: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        tap: bool = False,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.model = str(model)
        self.served_name = served_name or Path(self.model).name
        self.host = host
        self.port = port or _free_port(host)
        self.python = str(python)
        self.tap = tap
        self.args = list(args)
        self.env = env or {}
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1]
        )
        self._proc: Any = None
        self.ready_after_s: float | None = None

    @property
    def url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        from ..vllm_plugin import tap_server_args

        return [
            self.python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_name,
            "--host", self.host, "--port", str(self.port),
            *(tap_server_args(self.model) if self.tap else []),
            *self.args,
        ]

    def start(self) -> VLLMServerProcess:
        import subprocess
        import time

        self._started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(), env={**os.environ, **self.env}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 300.0) -> float:
        """Block until GET /v1/models answers; returns seconds since start."""
        import time

        import httpx

        while True:
            if self._proc.poll() is not None:
                raise BackendError(
                    f"vLLM exited with {self._proc.returncode}: {self.log_tail()}",
                    hint=f"Full log: {self.log_path}",
                )
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    self.ready_after_s = time.monotonic() - self._started
                    return self.ready_after_s
            except httpx.TransportError:
                pass
            if time.monotonic() - self._started > timeout:
                self.stop()
                raise BackendTimeoutError(
                    f"vLLM was not ready after {timeout:.0f} s: {self.log_tail()}",
                    hint=f"Full log: {self.log_path}",
                )
            time.sleep(0.5)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        import signal
        import subprocess

        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the engine processes it started
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> VLLMServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def chat_token_ids(tokenizer, messages: Sequence[Message]) -> list[int]:
    """The chat-template prompt as token ids (a Hugging Face tokenizer), with every message's
    content tokenized as plain text: a `<|im_start|>` written by a client is text, never a
    turn. Control tokens come only from the template itself, rendered around placeholders that
    stand for the contents (as the embedded backend's `chat_tokens` does with llama.cpp)."""
    return template_token_ids(
        messages,
        lambda dicts: tokenizer.apply_chat_template(dicts, tokenize=False,
                                                    add_generation_prompt=True),
        lambda text, special: _token_ids(tokenizer, text, special=special),
        getattr(tokenizer, "name_or_path", None) or "this model")


def _token_ids(tokenizer, text: str, *, special: bool) -> list[int]:
    """Token ids of `text` (no BOS/EOS added). special=False: control-token text such as
    `<|im_end|>` is split into ordinary tokens (client text); True: parsed as control tokens
    (template text only)."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=not special)["input_ids"])


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _rid() -> str:
    return f"sg-{uuid.uuid4().hex}"


def _logprobs(choice, top_n: int) -> list[TokenLogprob] | None:
    if not choice.logprobs:
        return None
    items = []
    for token_id, entry in zip(choice.token_ids, choice.logprobs, strict=False):
        chosen = entry[token_id]
        top = {
            lp.decoded_token: lp.logprob
            for lp in sorted(entry.values(), key=lambda lp: lp.rank)
            if lp.rank is not None and lp.rank <= top_n
        }
        items.append(TokenLogprob(token=chosen.decoded_token or "", logprob=chosen.logprob, top=top))
    return items


__all__ = ["DEFAULT_URL_ENV", "VLLMEngineBackend", "VLLMServerBackend", "VLLMServerProcess",
           "chat_token_ids"]
