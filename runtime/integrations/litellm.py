"""specguard as a LiteLLM proxy guardrail: the chat graph's checks on the traffic a LiteLLM
proxy already carries, by the in-process runtime or by a specguard server.

    guardrails:
      - guardrail_name: specguard-input
        litellm_params:
          guardrail: specguard.integrations.litellm.SpecguardGuardrail
          mode: pre_call            # or during_call (in parallel with the model call)
          api_base: http://specguard:8000        # a specguard server; leave out: in process
          api_key: os.environ/SPECGUARD_API_KEY
      - guardrail_name: specguard-output
        litellm_params:
          guardrail: specguard.integrations.litellm.SpecguardGuardrail
          mode: post_call           # answers; streams through the hold-back window
          api_base: http://specguard:8000
          api_key: os.environ/SPECGUARD_API_KEY

What each mode does:

- pre_call / during_call: the input check on the request's messages; a flagged request is
  answered with HTTP 400 (LiteLLM's guardrail error) whose message is the policy's refusal and
  whose detail carries specguard's verdicts. pre_call runs before the model is called (it is
  never called for a flagged request); during_call runs beside the model call.
- post_call: the output check on the answer in its conversation. A flagged answer is replaced
  by the policy's refusal with `finish_reason: "content_filter"` (`output_action: error`
  answers 400 instead). A stream goes through a hold-back window (`holdback_chars`, 200 by
  default, as specguard's own chunked streams): text goes out once the text after it is
  checked, so the last `holdback_chars` characters wait for the next check; a flagged prefix
  stops the stream, and the client gets what had passed, a paragraph break and the refusal,
  with `finish_reason: "content_filter"`. The rest of the model's stream is read and dropped
  (LiteLLM logs a stream, with its usage and the verdicts, once its upstream ends);
  `drain_flagged_streams: false` stops the model instead, and LiteLLM then logs nothing for it.

Who the caller is comes from LiteLLM's key, never from the request body: the key's team maps
onto a specguard tenant and the key's user onto a specguard user. In process: `tenants:
{<team id>: <tenant>}`, else a team whose id is a tenant of the policy, else `default_tenant`.
Against a server, the specguard key decides the tenant: `team_keys: {<team id>: <key>}`, else
`api_key`; the user travels in the server's trusted-user header (honoured for keys with
`trusted_gateway: true`).

Every check's outcome goes into LiteLLM's standard logging payload (`guardrail_information`:
status, the verdicts, tiers, categories, spec versions and latency), so it reaches whatever
LiteLLM logs to. If specguard cannot be reached the request fails (fail closed) unless
`fail_open: true`.

Requires the `litellm-proxy` extra (`pip install 'specguard[litellm-proxy,guard,server]'`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Literal

try:
    from fastapi import HTTPException
    from litellm.integrations.custom_guardrail import CustomGuardrail
    from litellm.types.guardrails import GuardrailEventHooks
    from litellm.types.utils import Delta, ModelResponse, ModelResponseStream, StreamingChoices
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "specguard.integrations.litellm needs the LiteLLM proxy: "
        "pip install 'specguard[litellm-proxy]'") from exc

from ..checks import CheckResult
from ..errors import ConfigError
from ..types import Capabilities, Message, Role

log = logging.getLogger("specguard.integrations.litellm")

PROVIDER = "specguard"
USER_HEADER = "x-specguard-user"
_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")  # what a server accepts
_COMPLETION_CALLS = {"completion", "acompletion"}
SEPARATOR = "\n\n"  # between streamed text that passed and the refusal


class SpecguardGuardrail(CustomGuardrail):
    """A LiteLLM custom guardrail running specguard's input and output checks (see the module
    docstring for the config). Built by the LiteLLM proxy from `litellm_params`, or in Python
    with a `Runtime` of your own: ``SpecguardGuardrail(runtime=rt, guardrail_name="sg",
    event_hook="pre_call")``."""

    # Our own pre_call/during_call/post_call and streaming hooks, not LiteLLM's unified
    # apply_guardrail path; each hook records its own logging entry.
    use_native_lifecycle_hooks = True
    use_native_during_call_hook = True
    records_own_guardrail_information = True

    def __init__(
        self,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        team_keys: Mapping[str, str] | None = None,
        tenants: Mapping[str, str] | None = None,
        default_tenant: str = "default",
        policy: str | None = None,
        store: str | None = None,
        guard_model: str | None = None,
        runtime: Any = None,
        holdback_chars: int = 200,
        output_action: Literal["refuse", "error"] = "refuse",
        fail_open: bool = False,
        check_timeout_s: float = 30.0,
        drain_flagged_streams: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("supported_event_hooks", [GuardrailEventHooks.pre_call,
                                                    GuardrailEventHooks.during_call,
                                                    GuardrailEventHooks.post_call])
        super().__init__(**kwargs)
        if output_action not in ("refuse", "error"):
            raise ConfigError(f"output_action must be 'refuse' or 'error', not {output_action!r}.")
        if holdback_chars < 1:
            raise ConfigError(f"holdback_chars must be at least 1, not {holdback_chars}.")
        self.api_base = api_base.rstrip("/") if api_base else None
        self.api_key = _secret(api_key)
        self.team_keys = {team: _secret(key) for team, key in (team_keys or {}).items()}
        self.tenants = dict(tenants or {})
        self.default_tenant = default_tenant
        self.holdback_chars = int(holdback_chars)
        self.output_action = output_action
        self.fail_open = bool(fail_open)
        self.check_timeout_s = float(check_timeout_s)
        self.drain_flagged_streams = bool(drain_flagged_streams)
        self._runtime = runtime
        self._runtime_options = {"policy": policy, "store": store, "guard_model": guard_model}
        self._runtime_lock = asyncio.Lock()
        self._http = None
        if self.api_base is None and runtime is None and any(
                (api_key, team_keys)):
            raise ConfigError("api_key/team_keys are for a specguard server, and api_base is not set.",
                              hint="Set api_base to the server's URL, or leave the keys out to "
                                   "check in process.")
        if self.api_base is not None and not (self.api_key or self.team_keys):
            raise ConfigError("A specguard server needs an API key (api_key, or team_keys).",
                              hint="api_key: os.environ/SPECGUARD_API_KEY")

    # -- LiteLLM's hooks -------------------------------------------------------------------

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        if call_type in _COMPLETION_CALLS and self._runs(data, GuardrailEventHooks.pre_call):
            await self._check_input(user_api_key_dict, data, GuardrailEventHooks.pre_call)
        return data

    async def async_moderation_hook(self, data: dict, user_api_key_dict, call_type):
        if call_type in _COMPLETION_CALLS and self._runs(data, GuardrailEventHooks.during_call):
            await self._check_input(user_api_key_dict, data, GuardrailEventHooks.during_call)

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict, response):
        if not (isinstance(response, ModelResponse) and self._runs(data, GuardrailEventHooks.post_call)):
            return response
        for choice in response.choices:
            message = getattr(choice, "message", None)
            answer = getattr(message, "content", None)
            if not isinstance(answer, str):
                continue
            result = await self._check(user_api_key_dict, data, answer=answer,
                                       event=GuardrailEventHooks.post_call)
            if result is not None and result.flagged:
                if self.output_action == "error":
                    raise _blocked(result)
                message.content = result.refusal
                choice.finish_reason = "content_filter"
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict, response: AsyncIterator[Any], request_data: dict,
    ) -> AsyncGenerator[Any, None]:
        """The hold-back window: chunks go out once the text after them is checked."""
        if not self._runs(request_data, GuardrailEventHooks.post_call):
            async for chunk in response:
                yield chunk
            return
        held: list[tuple[Any, int]] = []  # chunks not yet sent, each with the text length after it
        text = ""
        released = 0  # characters of text the client has
        checked = 0
        flagged: CheckResult | None = None
        last = None
        try:
            async for chunk in response:
                last = chunk
                text += _chunk_text(chunk)
                held.append((chunk, len(text)))
                if len(text) - checked < self.holdback_chars:
                    continue
                checked = len(text)
                result = await self._check(user_api_key_dict, request_data, answer=text,
                                           event=GuardrailEventHooks.post_call)
                if result is not None and result.flagged:
                    flagged = result
                    break
                safe = len(text) - self.holdback_chars
                while held and held[0][1] <= safe:
                    chunk_out, released = held.pop(0)
                    yield chunk_out
            if flagged is None and held:
                if len(text) > checked or checked == 0:
                    result = await self._check(user_api_key_dict, request_data, answer=text,
                                               event=GuardrailEventHooks.post_call)
                    flagged = result if result is not None and result.flagged else None
                if flagged is None:
                    for chunk_out, _ in held:
                        yield chunk_out
                    return
        finally:
            close = getattr(response, "aclose", None)
            if flagged is not None and not self.drain_flagged_streams and close is not None:
                await close()  # the model stops generating what nobody will read
        if flagged is None:
            return
        if self.output_action == "error":
            await self._drain(response)
            raise _blocked(flagged)
        yield _refusal_chunk(last, (SEPARATOR if released else "") + (flagged.refusal or ""))
        await self._drain(response)

    async def _drain(self, response: AsyncIterator[Any]) -> None:
        """The rest of a flagged stream, read and dropped: LiteLLM logs a stream (the output it
        served, its usage and these verdicts) only once its upstream stream ends."""
        if self.drain_flagged_streams:
            async for _ in response:
                pass

    # -- checks ----------------------------------------------------------------------------

    def _runs(self, data: dict, event: GuardrailEventHooks) -> bool:
        return self.should_run_guardrail(data=data, event_type=event) is True

    async def _check_input(self, key, data: dict, event: GuardrailEventHooks) -> None:
        result = await self._check(key, data, answer=None, event=event)
        if result is not None and result.flagged:
            raise _blocked(result)

    async def _check(self, key, data: dict, *, answer: str | None,
                     event: GuardrailEventHooks) -> CheckResult | None:
        """One check (input without an answer, output with one), recorded in LiteLLM's logging
        payload. None when specguard could not be reached and `fail_open` lets it pass."""
        messages = to_messages(data.get("messages") or [])
        stage = "input" if answer is None else "output"
        start = time.time()
        if not any(m.role is Role.USER for m in messages):
            return None  # nothing a user wrote: nothing to check (specguard needs a user turn)
        team, user = identity(key)
        try:
            if self.api_base is not None:
                result = await self._check_remote(messages, answer, stage, team, user)
            else:
                result = await self._check_local(messages, answer, stage, team, user)
        except _Unreachable as exc:
            self._record(data, {"error": str(exc), "stage": stage}, "guardrail_failed_to_respond",
                         start, event)
            if self.fail_open:
                log.warning("specguard could not check (%s); fail_open lets the request pass", exc)
                return None
            raise HTTPException(status_code=503, detail={
                "error": f"specguard could not check this request: {exc}",
                "guardrail": self.guardrail_name}) from exc
        status = "guardrail_intervened" if result.flagged else "success"
        self._record(data, summary(result), status, start, event)
        return result

    async def _check_local(self, messages: list[Message], answer: str | None, stage: str,
                           team: str | None, user: str | None) -> CheckResult:
        runtime = await self.runtime()
        tenant = self.tenants.get(team) if team else None
        if tenant is None:
            known = runtime.policy.file.tenants
            tenant = team if team in known else self.default_tenant
        try:
            return await asyncio.wait_for(runtime.check(messages, answer=answer, stage=stage,
                                                        tenant=tenant, user=user),
                                          self.check_timeout_s)
        except TimeoutError as exc:
            raise _Unreachable(f"the check took over {self.check_timeout_s:.0f} s") from exc

    async def _check_remote(self, messages: list[Message], answer: str | None, stage: str,
                            team: str | None, user: str | None) -> CheckResult:
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.check_timeout_s)
        key = self.team_keys.get(team, self.api_key) if team else self.api_key
        if not key:
            raise _Unreachable(f"no specguard key for team {team!r} (team_keys) and no api_key")
        headers = {"authorization": f"Bearer {key}"}
        if user is not None:
            headers[USER_HEADER] = user
        body: dict[str, Any] = {"messages": [m.model_dump(mode="json") for m in messages],
                                "stage": stage}
        if answer is not None:
            body["answer"] = answer
        try:
            r = await self._http.post(f"{self.api_base}/v1/guard/check", json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _Unreachable(f"{type(exc).__name__} from {self.api_base}") from exc
        if r.status_code != 200:
            try:
                message = r.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = r.text[:200]
            raise _Unreachable(f"the specguard server answered {r.status_code}: {message}")
        return CheckResult.model_validate(r.json())

    async def runtime(self):
        """The in-process runtime: built on first use from `policy`, `store` and `guard_model`
        (a `load_backend` URI for the deliberative tier; without one, the fast tier alone)."""
        if self._runtime is not None:
            return self._runtime
        async with self._runtime_lock:
            if self._runtime is None:
                self._runtime = await asyncio.to_thread(_build_runtime, **self._runtime_options)
        return self._runtime

    def _record(self, data: dict, response: object, status: str, start: float,
                event: GuardrailEventHooks) -> None:
        end = time.time()
        self.add_standard_logging_guardrail_information_to_request_data(
            guardrail_json_response=response, request_data=data, guardrail_status=status,
            start_time=start, end_time=end, duration=end - start, guardrail_provider=PROVIDER,
            event_type=event)


# -- helpers -----------------------------------------------------------------------------------


class _Unreachable(Exception):
    """specguard did not answer (transport error, non-200, timeout)."""


def _secret(value: str | None) -> str | None:
    """A key, or LiteLLM's `os.environ/NAME` reference to one."""
    if value and value.startswith("os.environ/"):
        name = value.removeprefix("os.environ/")
        resolved = os.environ.get(name)
        if not resolved:
            raise ConfigError(f"The environment variable {name} (named in the guardrail's "
                              "litellm_params) is not set.")
        return resolved
    return value


def identity(key: Any) -> tuple[str | None, str | None]:
    """(team, user) of a LiteLLM key (UserAPIKeyAuth): set by LiteLLM's admin, never by the
    request. A user id a specguard server would not accept is left out."""
    team = getattr(key, "team_id", None) or None
    user = getattr(key, "user_id", None) or None
    if user is not None and not _USER_ID.match(str(user)):
        log.debug("LiteLLM user id %r is not a specguard user id; checked without a user", user)
        user = None
    return (str(team) if team else None), (str(user) if user else None)


def to_messages(raw: Sequence[Any]) -> list[Message]:
    """OpenAI-shaped messages as specguard's: text parts joined; developer turns are system
    turns; tool and function results are untrusted input, checked as user turns."""
    out: list[Message] = []
    for m in raw:
        m = m if isinstance(m, Mapping) else getattr(m, "model_dump", dict)()
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content
                                if isinstance(p, Mapping) and p.get("type") == "text")
        if not isinstance(content, str) or not content:
            continue
        role = {"system": Role.SYSTEM, "developer": Role.SYSTEM,
                "assistant": Role.ASSISTANT}.get(m.get("role"), Role.USER)
        out.append(Message(role=role, content=content))
    return out


def summary(result: CheckResult) -> dict[str, Any]:
    """What goes into LiteLLM's logs: the verdicts without the texts."""
    return {
        "flagged": result.flagged,
        "request_id": result.request_id,
        "tenant": result.tenant,
        "user": result.user,
        "profile": result.profile,
        "specs": [s.model_dump(mode="json") for s in result.specs],
        "latency_ms": result.latency_ms,
        "checks": [{
            "stage": c.stage.value, "ran": c.ran, "flagged": c.flagged,
            "label": c.label.value if c.label else None,
            "decided_by": c.decided_by.value if c.decided_by else None,
            "tiers": [t.value for t in c.tiers], "escalated": c.escalated,
            "undecided": c.undecided, "score": c.score, "categories": c.categories,
            "latency_ms": c.latency_ms,
        } for c in result.checks],
    }


def _blocked(result: CheckResult) -> HTTPException:
    return HTTPException(status_code=400, detail={
        "error": result.refusal or "The request was flagged by specguard.",
        "specguard": summary(result)})


def _chunk_text(chunk: Any) -> str:
    for choice in getattr(chunk, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        content = getattr(delta, "content", None)
        if isinstance(content, str):
            return content
    return ""


def _refusal_chunk(last: Any, text: str) -> ModelResponseStream:
    return ModelResponseStream(
        id=getattr(last, "id", None) or "specguard", model=getattr(last, "model", None),
        choices=[StreamingChoices(index=0, delta=Delta(content=text, role="assistant"),
                                  finish_reason="content_filter")])


class _NoChatModel:
    """The in-process runtime's model when it only checks: the fast tier needs none. Called,
    it says how to give the guard a model."""

    name = "none"
    capabilities = Capabilities()

    async def load(self) -> None:
        return None

    async def complete(self, messages, params):
        raise ConfigError("The guardrail's in-process runtime has no model.",
                          hint="Set guard_model in the guardrail's litellm_params for a "
                               "deliberative tier.")

    async def stream(self, messages, params):
        raise ConfigError("The guardrail's in-process runtime has no model.")
        yield  # pragma: no cover

    async def aclose(self) -> None:
        return None


def _build_runtime(*, policy: str | None, store: str | None, guard_model: str | None):
    from ..backends import load_backend
    from ..core import Runtime
    from ..guard import TieredGuard, load_fast_checker
    from ..policy import Policy
    from ..store import Store

    loaded = Policy.load(policy) if policy else Policy.default()
    kwargs: dict[str, Any] = {"policy": loaded, "store": Store(store or ":memory:")}
    if guard_model:
        return Runtime(load_backend(guard_model), **kwargs)
    fast = load_fast_checker()
    if fast is None:
        raise ConfigError("No fast-tier guard is installed, and guard_model is not set.",
                          hint="pip install 'specguard[guard]', or set guard_model.")
    return Runtime(_NoChatModel(), guard=TieredGuard(fast=fast), **kwargs)


__all__ = ["SpecguardGuardrail", "identity", "summary", "to_messages"]
