"""Dead letters: read them from their JetStream stream and re-drive them.

The stream capturing `osiris.deadletter` is the source of truth (the feedback plugin also
keeps a `deadletter` table as history). `replay` publishes a letter's original payload and
headers on its original subject — with a fresh `Nats-Msg-Id` (the original may still be in
the duplicate window) and `Osiris-Replay-Of` carrying the original id, which consumers see
as `EventMeta.msg_id`, so idempotent writes stay keyed as before — then deletes the letter
from the stream.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import msgspec
from nats.js.errors import NotFoundError

from osiris_core.errors import NotFound
from osiris_core.nats.bus import MSG_ID_HEADER, REPLAY_OF_HEADER, Bus
from osiris_core.protocol import DeadLetter
from osiris_core.subjects import DEADLETTER

__all__ = ["REPLAY_OF_HEADER", "StoredLetter", "delete", "list_letters", "replay"]

_decode = msgspec.json.Decoder(DeadLetter)


@dataclass(frozen=True)
class StoredLetter:
    seq: int
    """Sequence in the dead-letter stream: what `replay SEQ` takes."""
    letter: DeadLetter


def _stream() -> str:
    assert DEADLETTER.stream is not None
    return DEADLETTER.stream


async def list_letters(bus: Bus, *, limit: int = 0) -> list[StoredLetter]:
    """Every dead letter still in the stream, oldest first (`limit` > 0: the newest N)."""
    try:
        info = await bus.js.stream_info(_stream())
    except NotFoundError:
        return []
    first, last = info.state.first_seq, info.state.last_seq
    if limit > 0:
        first = max(first, last - limit + 1)
    out: list[StoredLetter] = []
    for seq in range(first, last + 1):
        try:
            raw = await bus.js.get_msg(_stream(), seq)
        except NotFoundError:
            continue  # replayed (deleted) or purged
        try:
            out.append(StoredLetter(seq, _decode.decode(raw.data or b"")))
        except msgspec.MsgspecError:
            continue
    return out


def original_payload(letter: DeadLetter) -> bytes:
    if letter.payload_encoding == "base64":
        return base64.b64decode(letter.payload)
    return letter.payload.encode()


async def replay(bus: Bus, stored: StoredLetter) -> bool:
    """Re-publish one letter on its subject, then delete it; True unless a duplicate."""
    letter = stored.letter
    headers = {k: v for k, v in letter.headers.items() if k != MSG_ID_HEADER}
    headers[REPLAY_OF_HEADER] = letter.msg_id or f"{letter.stream}:{letter.stream_seq}"
    fresh = await bus.publish(letter.subject, original_payload(letter), headers=headers,
                              msg_id=f"{letter.id}:replay:{stored.seq}", durable=True)
    await delete(bus, stored.seq)
    return fresh


async def delete(bus: Bus, seq: int) -> None:
    try:
        await bus.js.delete_msg(_stream(), seq)
    except NotFoundError:
        raise NotFound(f"no dead letter with sequence {seq}") from None
