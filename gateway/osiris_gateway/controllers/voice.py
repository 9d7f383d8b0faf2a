"""Seed voice routes: `POST /speak` (WAV), `GET /stream/audio` (SSE of `audio.bytes`) and
the audio console page, served from the tts plugin's package when it is installed."""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncIterator
from importlib import resources
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from msgspec import Meta

from osiris_contracts.messages import Exaggeration, SpeechText, TtsRequest, UtteranceId
from osiris_contracts.subjects import AUDIO_BYTES, TTS_SPEAK
from osiris_core.errors import ServiceError

from ..errors import HttpError, service_error_body, status_for
from ..schemas import ErrorBody
from ..security import rate_limit_guard
from ..sse import EventStream
from .generate import error_responses

__all__ = ["SpeakBody", "StaticController", "VoiceController", "sse_of_events"]

STATIC_PACKAGE = "osiris_tts"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class SpeakBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Seed `/speak` body (plus optional streaming onto `audio.bytes`)."""

    text: Annotated[SpeechText, Meta(min_length=1)]
    exaggeration: Exaggeration = 0.5
    ref_wav_b64: str | None = None
    stream: bool = False
    """Also publish the utterance sentence by sentence on `audio.bytes`."""
    utterance_id: UtteranceId | None = None


async def sse_of_events(request: Request[Any, Any, Any], patterns: list[str], kind: str,
                        named: bool) -> ServerSentEvent:
    """SSE of raw event payloads; `named` sets `event: <subject>` on each frame."""
    gw = request.app.state.gw
    events = gw.events(patterns, kind)

    async def frames() -> AsyncIterator[ServerSentEventMessage]:
        seq = 0
        try:
            async for subject, data in events:
                if not subject:  # "subscribed" once the subscription is live, then pings
                    yield ServerSentEventMessage(data=None, comment=data.decode() or "ping")
                    continue
                seq += 1
                yield ServerSentEventMessage(data=data.decode("utf-8", "replace"), id=seq,
                                             event=subject if named else None)
        finally:
            await events.aclose()

    return EventStream(frames())


class VoiceController(Controller):
    tags = ["voice"]

    @post("/speak", guards=[rate_limit_guard], status_code=200, media_type="audio/wav",
          summary="Text to speech: a complete WAV",
          responses={200: ResponseSpec(data_container=bytes, media_type="audio/wav",
                                       description="WAV audio", generate_examples=False),
                     **error_responses(400, 401, 413, 422, 429, 502, 503, 504)})
    async def speak(self, request: Request[Any, Any, Any],
                    data: JSONBody[SpeakBody]) -> Response[bytes]:
        gw = request.app.state.gw
        req = TtsRequest(text=data.text, exaggeration=data.exaggeration,
                         ref_wav_b64=data.ref_wav_b64, stream=data.stream,
                         utterance_id=data.utterance_id)
        try:
            wav: bytes = await gw.call(request, "tts", TTS_SPEAK.name, req, reply_type=bytes,
                                       timeout=gw.config.generate_timeout_s)
        except ServiceError as e:
            body = service_error_body(e)
            body.actor = "tts"
            raise HttpError(status_for(e), body) from None
        return Response(wav, media_type="audio/wav")

    @get("/stream/audio", summary="Server-sent events of audio.bytes (AudioChunk JSON)",
         media_type="text/event-stream", responses=error_responses(401, 503))
    async def stream_audio(self, request: Request[Any, Any, Any]) -> ServerSentEvent:
        return await sse_of_events(request, [AUDIO_BYTES.name], "audio", named=False)


class StaticController(Controller):
    path = "/static"
    tags = ["voice"]

    @get("/{name:str}", summary="Static pages of the tts plugin (audio_console.html)",
         responses=error_responses(400, 401, 404), media_type="text/html")
    async def static(self, name: FromPath[str]) -> Response[bytes]:
        if not _SAFE_NAME.match(name) or name.startswith("."):
            raise HttpError(400, ErrorBody(error=f"invalid file name {name!r}", field="name"))
        try:
            root = resources.files(STATIC_PACKAGE).joinpath("static")
        except ModuleNotFoundError:
            raise HttpError(404, ErrorBody(
                error=f"{name} is served by the tts plugin, which is not installed "
                      "(pip install osiris-tts)")) from None
        res = root.joinpath(name)
        if not res.is_file():
            raise HttpError(404, ErrorBody(error=f"no static file {name!r}"))
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(res.read_bytes(), media_type=kind,
                        headers={"Cache-Control": "no-cache"})
