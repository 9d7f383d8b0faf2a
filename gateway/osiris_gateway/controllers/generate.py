"""Seed generation routes: `/generate/`, `/generate/hermes/`, `/generate/phi3/`.

Each maps to `osiris.<model>.generate`; `"stream": true` answers server-sent events: one
`data: {"text", "index"}` per token, then `event: done` with the full result.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from osiris_contracts.messages import GenerateReply, GenerateRequest, TradeProposal
from osiris_contracts.subjects import HERMES_GENERATE, PHI3_GENERATE
from osiris_core.errors import RequestTimeout, ServiceError, Unavailable

from ..errors import HttpError, service_error_body, status_for
from ..schemas import PHI3_MIN_LENGTH, ErrorBody, GenerateBody, GenerateResponse, ModelBody, Phi3Body
from ..security import rate_limit_guard
from ..sse import EventStream

__all__ = ["MODELS", "GenerateController", "error_responses", "generate", "stream_events"]

MODELS = {"hermes": HERMES_GENERATE.name, "phi3": PHI3_GENERATE.name}
STREAMS_TOKENS = {"hermes": True, "phi3": False}
"""phi3 returns one validated proposal: a streamed request gets it as the single `done` event."""
NOT_LOADED = {
    "hermes": "Hermes model not loaded. Please check server logs.",
    "phi3": "Phi-3 ONNX model not loaded. Please check server logs.",
}
INVALID_MODEL = "Invalid model_id specified. Choose 'hermes' or 'phi3'."


def error_responses(*codes: int, container: Any = ErrorBody) -> dict[int, ResponseSpec]:
    text = {400: "Bad request (seed body)", 401: "Missing or invalid API key",
            403: "Admin key required", 404: "Not found", 413: "Body larger than the cap",
            422: "Invalid field (named in `field`)", 429: "Rate limited (see Retry-After)",
            502: "The actor failed", 503: "Model not loaded, paused, or no actor",
            504: "The actor did not answer in time"}
    return {c: ResponseSpec(data_container=container, description=text.get(c, "Error"))
            for c in codes}


GEN_ERRORS = error_responses(400, 401, 413, 422, 429, 502, 503, 504)


def model_error(model: str, err: ServiceError) -> HttpError:
    """Seed-shaped errors of a model route (503 keeps the seeds' 'not loaded' message)."""
    if isinstance(err, Unavailable) or err.code == 503:
        return HttpError(503, ErrorBody(error=NOT_LOADED[model], detail=err.message, actor=model))
    if isinstance(err, RequestTimeout) or err.code == 504:
        return HttpError(504, ErrorBody(error=f"{model} did not answer in time: {err.message}",
                                        actor=model))
    body = service_error_body(err)
    body.actor = model
    return HttpError(status_for(err), body)


GREEDY_BELOW = 1e-2


def sampling_temperature(t: float | None) -> float | None:
    """Temperatures too small to sample with (softmax overflows to inf/nan) mean greedy."""
    return 0.0 if t is not None and t < GREEDY_BELOW else t


def to_request(body: ModelBody) -> GenerateRequest:
    return GenerateRequest(prompt=body.prompt, max_length=body.max_length,
                           temperature=sampling_temperature(body.temperature), top_p=body.top_p,
                           stop=body.stop, stream=body.stream)


def final_result(model: str, item: dict[str, Any]) -> Any:
    """What the `done` event carries: hermes text (+usage) or the phi3 proposal."""
    if "reply" in item:  # the actor answered without streaming
        return item["reply"]
    text = item.get("generated_text") or ""
    if model == "phi3":
        try:
            return msgspec.json.decode(text)
        except msgspec.DecodeError:
            pass
    out: dict[str, Any] = {"generated_text": text}
    if item.get("usage"):
        out["usage"] = item["usage"]
    return out


async def stream_events(request: Request[Any, Any, Any], model: str,
                        req: GenerateRequest) -> ServerSentEvent:
    chunks = open_stream(request, model, req)
    try:  # the first chunk decides the status: errors before it are real HTTP errors
        first = await chunks.__anext__()
    except ServiceError as e:
        raise model_error(model, e) from None

    async def frames() -> AsyncIterator[ServerSentEventMessage]:
        item: dict[str, Any] | None = first
        try:
            while item is not None:
                if item.get("done"):
                    if item.get("text"):
                        yield ServerSentEventMessage(data=_chunk_json(item))
                    yield ServerSentEventMessage(
                        event="done", data=msgspec.json.encode(final_result(model, item)).decode())
                    return
                yield ServerSentEventMessage(data=_chunk_json(item))
                item = await chunks.__anext__()
        except ServiceError as e:
            err = model_error(model, e)
            yield ServerSentEventMessage(event="error",
                                         data=msgspec.json.encode(err.body).decode())
        finally:
            await chunks.aclose()

    return EventStream(frames())


def open_stream(request: Request[Any, Any, Any], model: str,
                req: GenerateRequest) -> AsyncGenerator[dict[str, Any], None]:
    gw = request.app.state.gw
    if STREAMS_TOKENS[model]:
        chunks: AsyncGenerator[dict[str, Any], None] = gw.stream(model, MODELS[model], req)
        return chunks
    whole: AsyncGenerator[dict[str, Any], None] = gw.whole(
        model, MODELS[model], msgspec.structs.replace(req, stream=False))
    return whole


def _chunk_json(item: dict[str, Any]) -> str:
    return msgspec.json.encode({"text": item.get("text", ""), "index": item.get("index", 0)}).decode()


async def call_model(request: Request[Any, Any, Any], model: str, req: GenerateRequest) -> Any:
    """One non-streamed generation: hermes → GenerateReply, phi3 → TradeProposal; actor
    errors become the seeds' HTTP errors."""
    gw = request.app.state.gw
    reply_type = GenerateReply if model == "hermes" else TradeProposal
    try:
        return await gw.call(request, model, MODELS[model], req, reply_type=reply_type,
                             timeout=gw.config.generate_timeout_s)
    except ServiceError as e:
        raise model_error(model, e) from None


async def generate(request: Request[Any, Any, Any], model: str, body: ModelBody) -> Any:
    req = to_request(body)
    if body.stream:
        return await stream_events(request, model, req)
    reply = await call_model(request, model, req)
    if model == "hermes":
        return GenerateResponse(generated_text=reply.generated_text)
    return reply


class GenerateController(Controller):
    path = "/generate"
    tags = ["generation"]
    guards = [rate_limit_guard]

    @post("/", summary="Generate with hermes (default) or phi3", responses=GEN_ERRORS,
          status_code=200)
    async def unified(
        self, request: Request[Any, Any, Any], data: JSONBody[GenerateBody]
    ) -> GenerateResponse | TradeProposal:
        if data.model_id not in MODELS:
            raise HttpError(400, ErrorBody(error=INVALID_MODEL, specified_model_id=data.model_id))
        if data.model_id == "phi3" and data.max_length < PHI3_MIN_LENGTH:
            raise HttpError(422, ErrorBody(
                error=f"Invalid request: field 'max_length': phi3 needs at least "
                      f"{PHI3_MIN_LENGTH} tokens to write a complete proposal", field="max_length"))
        result: GenerateResponse | TradeProposal = await generate(request, data.model_id, data)
        return result

    @post("/hermes", summary="Free text from hermes", responses=GEN_ERRORS, status_code=200)
    async def hermes(
        self, request: Request[Any, Any, Any], data: JSONBody[ModelBody]
    ) -> GenerateResponse:
        result: GenerateResponse = await generate(request, "hermes", data)
        return result

    @post("/phi3", summary="A schema-valid trade proposal from phi3", responses=GEN_ERRORS,
          status_code=200)
    async def phi3(
        self, request: Request[Any, Any, Any], data: JSONBody[Phi3Body]
    ) -> TradeProposal:
        result: TradeProposal = await generate(request, "phi3", data)
        return result


def json_response(payload: Any, status: int = 200) -> Response[Any]:
    return Response(msgspec.json.encode(payload), status_code=status, media_type="application/json")
