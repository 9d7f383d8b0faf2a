"""HTTP bodies: msgspec Structs whose field names are the seeds' (and OpenAI's) own.

Seed routes reject unknown fields with a 422 naming the field; the OpenAI-compatible
bodies ignore them, because OpenAI clients send many optional knobs we do not use.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from osiris_contracts.messages import Prompt, StopStrings, Temperature, TopP

__all__ = [
    "ActorControlReply",
    "AdapterBody",
    "ChatChoice",
    "ChatCompletion",
    "ChatMessage",
    "ChatRequest",
    "ErrorBody",
    "GenerateBody",
    "GenerateResponse",
    "HealthActor",
    "HealthResponse",
    "ModelBody",
    "PHI3_MIN_LENGTH",
    "Phi3Body",
    "ModelCard",
    "ModelList",
    "OpenAIError",
    "OpenAIErrorBody",
    "ProposeBody",
    "Usage",
]

# Prompt, Temperature, TopP and StopStrings are the bus contracts' own bounds, so HTTP and
# NATS refuse the same values. max_length is narrower here: the HTTP surface keeps to phi3's
# default cap (1024) while the wire allows up to contracts.MAX_NEW_TOKENS for bigger
# configured caps.
HTTP_MAX_NEW_TOKENS = 1024
MaxLength = Annotated[int, Meta(ge=1, le=HTTP_MAX_NEW_TOKENS,
                                description="Most new tokens to generate "
                                            "(the model actors' default cap).")]
PHI3_MIN_LENGTH = 256
"""A complete proposal (rationale up to 160 characters) needs this many tokens: less and
phi3 cannot finish one, so the gateway refuses it up front with a 422 naming max_length."""


class Strict(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A seed body: unknown fields are a 422 naming them."""


class ModelBody(Strict):
    """`POST /generate/hermes/` and `/generate/phi3/` (seed body)."""

    prompt: Prompt
    max_length: MaxLength = 256
    stream: bool = False
    """Beyond the seeds: `true` streams tokens as server-sent events."""
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: StopStrings | None = None


class Phi3Body(ModelBody):
    """`POST /generate/phi3/` (seed body): the budget must fit a whole proposal."""

    max_length: Annotated[int, Meta(ge=PHI3_MIN_LENGTH, le=HTTP_MAX_NEW_TOKENS,
                                    description="Most new tokens (a proposal needs 256).")] = 256


class GenerateBody(ModelBody):
    """`POST /generate/` (seed body): `model_id` picks hermes (default) or phi3."""

    model_id: str = "hermes"


class GenerateResponse(msgspec.Struct, kw_only=True):
    """Hermes success (seed shape)."""

    generated_text: str


class ProposeBody(Strict):
    """`POST /propose_trade_adjustments/` (seed body; max_length is phi3's budget)."""

    prompt: Prompt
    max_length: Annotated[int, Meta(ge=PHI3_MIN_LENGTH, le=HTTP_MAX_NEW_TOKENS,
                                    description="phi3's token budget (a proposal needs 256).")] = 256


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error the gateway answers: the seeds' `error` (or `detail` on feedback), plus
    the offending field and the upstream detail where there is one."""

    error: str
    specified_model_id: str | None = None
    detail: Any = None
    field: str | None = None
    actor: str | None = None
    retry_after: float | None = None
    phi3_details: Any = None


# --- health -----------------------------------------------------------------------------
class HealthActor(msgspec.Struct, kw_only=True):
    """One live actor replica as its runtime reports it."""

    name: str
    node: str
    plugin: str
    state: str
    restarts: int
    in_flight: int
    handled: int
    errors: int
    last_error: str | None = None
    loaded: bool | None = None
    device: str | None = None
    adapter: str | None = None
    facts: dict[str, Any] = {}


class HealthResponse(msgspec.Struct, kw_only=True):
    """Seed fields first (`status` ok|partial_error|error …), then per-actor detail."""

    status: Literal["ok", "partial_error", "error"]
    hermes_loaded: bool
    phi3_loaded: bool
    phi3_model_file_exists: bool
    device: str
    nodes: int
    actors: list[HealthActor]
    checked_at: float
    age_s: float


# --- control ----------------------------------------------------------------------------
class AdapterBody(Strict):
    """Load (and activate) an adapter on a model actor."""

    path: Annotated[str, Meta(min_length=1, max_length=4096)]
    name: Annotated[str, Meta(max_length=200)] | None = None
    activate: bool = True


class ActorControlReply(msgspec.Struct, kw_only=True):
    """An actor's answer to a control op: ok, its status after the op, op-specific data."""

    ok: bool
    status: dict[str, Any]
    result: dict[str, Any] = {}


# --- OpenAI-compatible ------------------------------------------------------------------
class ChatMessage(msgspec.Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


class JsonSchemaSpec(msgspec.Struct, kw_only=True):
    name: str = "response"
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(msgspec.Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaSpec | None = None


class ChatRequest(msgspec.Struct, kw_only=True):
    """`POST /v1/chat/completions` (the subset of OpenAI's body that osiris honours)."""

    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    max_tokens: MaxLength | None = None
    max_completion_tokens: MaxLength | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: Annotated[str, Meta(max_length=256)] | StopStrings | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    n: Annotated[int, Meta(ge=1, le=1)] = 1


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(msgspec.Struct, kw_only=True):
    role: str = "assistant"
    content: str | None = None


class ChatChoice(msgspec.Struct, kw_only=True):
    index: int
    message: AssistantMessage
    finish_reason: str | None = "stop"


class ChatCompletion(msgspec.Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"


class ModelCard(msgspec.Struct, kw_only=True):
    id: str
    created: int
    owned_by: str = "osiris"
    object: str = "model"


class ModelList(msgspec.Struct, kw_only=True):
    data: list[ModelCard]
    object: str = "list"


class OpenAIError(msgspec.Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(msgspec.Struct, kw_only=True):
    error: OpenAIError
