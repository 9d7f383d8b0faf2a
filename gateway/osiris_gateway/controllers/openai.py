"""OpenAI-compatible API: `GET /v1/models`, `POST /v1/chat/completions` (stream and not,
`stream_options.include_usage`, `response_format` json_schema/json_object → phi3).

Chat messages become one prompt: a lone user message is sent as it is (the model actor
applies its own chat template); a conversation is flattened to `Role: text` lines.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import JSONBody
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from osiris_contracts.messages import GenerateRequest
from osiris_core.errors import ServiceError

from ..errors import HttpError, openai_error
from ..schemas import (
    PHI3_MIN_LENGTH,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatMessage,
    ChatRequest,
    ErrorBody,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
    Usage,
)
from ..security import rate_limit_guard
from ..sse import EventStream
from .generate import (
    MODELS,
    call_model,
    error_responses,
    model_error,
    open_stream,
    sampling_temperature,
)

__all__ = ["OpenAIController", "render_prompt"]

CREATED = 1_700_000_000
DEFAULT_MAX_TOKENS = 256


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def render_prompt(messages: list[ChatMessage]) -> str:
    if len(messages) == 1 and messages[0].role == "user":
        return _text(messages[0].content)
    lines = [f"{m.role.capitalize()}: {_text(m.content)}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def _model_for(body: ChatRequest) -> str:
    fmt = body.response_format
    if fmt is not None and fmt.type in ("json_schema", "json_object"):
        return "phi3"
    name = body.model.split("/")[-1].lower()
    for model in MODELS:
        if name == model or name.startswith(model + "-") or name.startswith(model + ":"):
            return model
    raise HttpError(404, ErrorBody(
        error=f"The model {body.model!r} does not exist; use one of: {', '.join(MODELS)}",
        field="model"))


def _usage(raw: dict[str, int] | None) -> Usage:
    raw = raw or {}
    p, c = int(raw.get("prompt_tokens", 0)), int(raw.get("completion_tokens", 0))
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=int(raw.get("total_tokens", p + c)))


def _finish(usage: Usage, max_tokens: int) -> str:
    return "length" if usage.completion_tokens >= max_tokens else "stop"


def _content(model: str, reply: Any) -> str:
    if model == "phi3":
        return msgspec.json.encode(reply).decode()
    return str(reply.generated_text)


class OpenAIController(Controller):
    path = "/v1"
    tags = ["openai"]

    @get("/models", summary="Models served (OpenAI list shape)",
         responses=error_responses(401, container=OpenAIErrorBody))
    async def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=m, created=CREATED) for m in MODELS])

    @post("/chat/completions", guards=[rate_limit_guard], status_code=200,
          summary="Chat completion (OpenAI-compatible; SSE when stream=true)",
          responses=error_responses(400, 401, 404, 413, 422, 429, 502, 503, 504,
                                    container=OpenAIErrorBody))
    async def chat(self, request: Request[Any, Any, Any],
                   data: JSONBody[ChatRequest]) -> ChatCompletion:
        model = _model_for(data)
        max_tokens = data.max_completion_tokens or data.max_tokens or DEFAULT_MAX_TOKENS
        if model == "phi3":  # a JSON answer is complete or useless: give it room to finish
            max_tokens = max(max_tokens, PHI3_MIN_LENGTH)
        stop = [data.stop] if isinstance(data.stop, str) else data.stop
        req = GenerateRequest(prompt=render_prompt(data.messages), max_length=max_tokens,
                              temperature=sampling_temperature(data.temperature), top_p=data.top_p, stop=stop,
                              stream=data.stream)
        cid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if data.stream:
            include_usage = bool(data.stream_options and data.stream_options.include_usage)
            return await _stream(request, model, req, cid, created, max_tokens,  # type: ignore[return-value]
                                 include_usage, data.model)
        reply = await call_model(request, model, req)
        usage = _usage(getattr(reply, "usage", None))
        return ChatCompletion(
            id=cid, created=created, model=data.model, usage=usage,
            choices=[ChatChoice(index=0, message=AssistantMessage(content=_content(model, reply)),
                                finish_reason=_finish(usage, max_tokens))])


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any],
           finish: str | None = None) -> str:
    return msgspec.json.encode({
        "id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }).decode()


async def _stream(request: Request[Any, Any, Any], model: str, req: GenerateRequest, cid: str,
                  created: int, max_tokens: int, include_usage: bool,
                  name: str) -> ServerSentEvent:
    chunks = open_stream(request, model, req)
    try:
        first = await chunks.__anext__()
    except ServiceError as e:
        raise model_error(model, e) from None

    async def frames() -> AsyncIterator[ServerSentEventMessage]:
        item: dict[str, Any] = first
        yield ServerSentEventMessage(data=_chunk(cid, created, name,
                                                 {"role": "assistant", "content": ""}))
        try:
            while True:
                if "reply" in item:  # a non-streaming actor: the whole answer at once
                    text = msgspec.json.encode(item["reply"]).decode() if model == "phi3" \
                        else str(item["reply"].get("generated_text", ""))
                    yield ServerSentEventMessage(data=_chunk(cid, created, name, {"content": text}))
                elif item.get("text"):
                    yield ServerSentEventMessage(
                        data=_chunk(cid, created, name, {"content": item["text"]}))
                if item.get("done"):
                    usage = _usage(item.get("usage") or (item.get("reply") or {}).get("usage"))
                    yield ServerSentEventMessage(
                        data=_chunk(cid, created, name, {}, _finish(usage, max_tokens)))
                    if include_usage:
                        yield ServerSentEventMessage(data=msgspec.json.encode({
                            "id": cid, "object": "chat.completion.chunk", "created": created,
                            "model": name, "choices": [], "usage": usage}).decode())
                    yield ServerSentEventMessage(data="[DONE]")
                    return
                item = await chunks.__anext__()
        except ServiceError as e:
            err = model_error(model, e)
            yield ServerSentEventMessage(
                data=msgspec.json.encode(openai_error(err.status, err.body)).decode())
        finally:
            await chunks.aclose()

    return EventStream(frames())
