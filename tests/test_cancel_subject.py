"""`osiris.<actor>.cancel` and `Osiris-Request-Id`: how a caller that gave up says so."""

from __future__ import annotations

import msgspec
import pytest

from osiris_core.protocol import CancelRequest
from osiris_core.subjects import REQUEST_ID_HEADER, cancel, control


def test_cancel_subject_sits_next_to_control() -> None:
    assert cancel("hermes") == "osiris.hermes.cancel"
    assert control("hermes") == "osiris.hermes.control"
    assert REQUEST_ID_HEADER == "Osiris-Request-Id"


def test_cancel_request_contract_names_its_field() -> None:
    assert msgspec.json.decode(b'{"request_id": "r1"}', type=CancelRequest).request_id == "r1"
    with pytest.raises(msgspec.ValidationError, match="request_id"):
        msgspec.json.decode(b"{}", type=CancelRequest)
