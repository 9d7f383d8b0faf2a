"""From `[osiris]` settings to a NATS connection: servers, credentials, TLS, inbox prefix.

`connect_options` turns `OsirisSettings` into `nats.connect` keyword arguments (typed, no
I/O but checking that named files exist); `open_connection` connects with them and fails
fast, naming the setting to fix, when the server refuses the credentials or the TLS
handshake — nats-py would otherwise retry those forever. Every connect site of osiris
(runtime, CLI, gateway) goes through here. docs/deploy.md, "Connecting to NATS".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.errors import SecureConnRequiredError, SecureConnWantedError

from osiris_core.config import OsirisSettings
from osiris_core.errors import ConfigError, OsirisError, Unavailable

__all__ = [
    "NatsRefused",
    "Refusals",
    "connect_options",
    "nats_reachable",
    "open_connection",
    "plain_settings",
    "refusals_of",
    "secured",
    "server_urls",
    "tls_context",
]

log = logging.getLogger("osiris.nats")

CONNECT_TIMEOUT_S = 2.0
RECONNECT_WAIT_S = 0.5
ErrorCallback = Callable[[Exception], Awaitable[None]]


class NatsRefused(OsirisError):
    """The server refused our credentials or TLS: retrying cannot help, a setting must change."""


def server_urls(nats_url: str) -> list[str]:
    """`nats_url` may list several servers, comma-separated; `host:port` gets `nats://`."""
    urls = [u.strip() for u in nats_url.split(",") if u.strip()]
    return [u if "://" in u else f"nats://{u}" for u in urls]


def nats_reachable(url: str, timeout: float = 0.5) -> bool:
    """True when a NATS server answers INFO at one of the URLs of `url` (one short attempt
    each, no retries; a TLS server sends its INFO in the clear first, so it counts too)."""
    for server in server_urls(url):
        parsed = urlparse(server)
        host, port = parsed.hostname or "127.0.0.1", parsed.port or 4222
        try:
            with socket.create_connection((host, port), timeout=timeout) as s:
                s.settimeout(timeout)
                if s.recv(5).startswith(b"INFO"):
                    return True
        except OSError:
            continue
    return False


def secured(settings: OsirisSettings) -> bool:
    """Whether the settings carry credentials or TLS: they point at a real deployment."""
    s = settings
    return any((s.nats_user, s.nats_password, s.nats_token, s.nats_creds, s.nats_nkey,
                s.nats_tls_ca, s.nats_tls_cert, s.nats_tls_key)) or any(
        u.startswith("tls://") for u in server_urls(s.nats_url))


def plain_settings(settings: OsirisSettings, url: str) -> OsirisSettings:
    """The settings for a server of our own (the embedded one): `url`, no credentials, no TLS."""
    return msgspec.structs.replace(
        settings, nats_url=url, nats_user="", nats_password="", nats_token="", nats_creds="",
        nats_nkey="", nats_tls_ca="", nats_tls_cert="", nats_tls_key="", nats_tls_hostname="")


def _file(key: str, value: str) -> str:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError(f"[osiris] {key}: file not found: {value}")
    return str(path)


def tls_context(settings: OsirisSettings) -> ssl.SSLContext | None:
    """A client `SSLContext` when any of nats_tls_ca / nats_tls_cert / nats_tls_key is set:
    the CA verifies the server (else the system's CAs), cert + key authenticate us."""
    s = settings
    if not (s.nats_tls_ca or s.nats_tls_cert or s.nats_tls_key):
        return None
    if bool(s.nats_tls_cert) != bool(s.nats_tls_key):
        raise ConfigError("[osiris] nats_tls_cert and nats_tls_key go together (a client "
                          "certificate and its private key)")
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=_file("nats_tls_ca", s.nats_tls_ca) if s.nats_tls_ca
        else None)
    if s.nats_tls_cert:
        try:
            ctx.load_cert_chain(_file("nats_tls_cert", s.nats_tls_cert),
                                _file("nats_tls_key", s.nats_tls_key))
        except ssl.SSLError as e:
            raise ConfigError(f"[osiris] nats_tls_cert/nats_tls_key: cannot load: {e}") from None
    return ctx


def connect_options(settings: OsirisSettings, *, name: str = "osiris") -> dict[str, Any]:
    """`nats.connect` keyword arguments for `settings` (servers, auth, TLS, inbox prefix,
    reconnect policy). Raises `ConfigError` naming the key of a missing file or a bad pair."""
    s = settings
    servers = server_urls(s.nats_url)
    if not servers:
        raise ConfigError("[osiris] nats_url: no server URL")
    if bool(s.nats_user) != bool(s.nats_password):
        raise ConfigError("[osiris] nats_user and nats_password go together")
    if s.nats_creds and s.nats_nkey:
        raise ConfigError("[osiris] set nats_creds (a JWT creds file) or nats_nkey (an NKey "
                          "seed file), not both")
    opts: dict[str, Any] = {
        "servers": servers,
        "name": name,
        "connect_timeout": CONNECT_TIMEOUT_S,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": RECONNECT_WAIT_S,
    }
    if s.nats_user:
        opts["user"], opts["password"] = s.nats_user, s.nats_password
    if s.nats_token:
        opts["token"] = s.nats_token
    if s.nats_creds:
        opts["user_credentials"] = _file("nats_creds", s.nats_creds)
    if s.nats_nkey:
        opts["nkeys_seed"] = _file("nats_nkey", s.nats_nkey)
    ctx = tls_context(s)
    if ctx is not None:
        opts["tls"] = ctx
        if s.nats_tls_hostname:
            opts["tls_hostname"] = s.nats_tls_hostname
    if s.nats_inbox_prefix:
        opts["inbox_prefix"] = s.nats_inbox_prefix
    return opts


def _credential_keys(settings: OsirisSettings) -> str:
    s = settings
    if s.nats_creds:
        return "nats_creds"
    if s.nats_nkey:
        return "nats_nkey"
    if s.nats_user:
        return "nats_user/nats_password"
    if s.nats_token:
        return "nats_token"
    return "the server wants credentials: set nats_user/nats_password, nats_token, " \
           "nats_nkey or nats_creds"


_PUBLISH_REFUSED = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


class RefusalListener(Protocol):
    """What is told of a refused publish (`watch.ReplyMux`: fails its pending requests)."""

    def refused(self, subject: str) -> None: ...


class Refusals:
    """The subjects the server refused this connection's publishes to (a role without the
    grant under `osiris nats-config`): the server says so only in an async -ERR, so without
    this a refused request would wait out its timeout, or look like a lost replica."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.muxes: weakref.WeakSet[RefusalListener] = weakref.WeakSet()

    def note(self, err: BaseException) -> None:
        m = _PUBLISH_REFUSED.search(str(err))
        if m is None:
            return
        subject = m.group(1)
        self.at[subject] = time.monotonic()
        for mux in list(self.muxes):
            mux.refused(subject)

    def since(self, subject: str, t0: float) -> bool:
        """Was a publish to `subject` refused at or after monotonic time `t0`?"""
        return self.at.get(subject, -1.0) >= t0


_REFUSALS: weakref.WeakKeyDictionary[NATS, Refusals] = weakref.WeakKeyDictionary()


def refusals_of(nc: NATS) -> Refusals:
    """The refusals seen on `nc` (none recorded when it was not made by `open_connection`)."""
    got = _REFUSALS.get(nc)
    if got is None:
        got = _REFUSALS[nc] = Refusals()
    return got


def refusal(err: BaseException, settings: OsirisSettings) -> str | None:
    """A one-line reason when `err` (met while connecting) cannot be cured by retrying."""
    text = str(err).strip().strip("'").removeprefix("nats: ").strip("'")
    low = text.lower()
    if "authorization violation" in low or "authentication" in low or "user credentials" in low:
        return f"NATS refused the connection: {low} (check {_credential_keys(settings)})"
    if isinstance(err, ssl.SSLError):
        return (f"NATS TLS handshake failed: {err.reason or err} "
                "(check nats_tls_ca, nats_tls_cert and nats_tls_key)")
    if isinstance(err, SecureConnRequiredError | SecureConnWantedError):
        return f"NATS TLS mismatch: {type(err).__name__} (check tls:// URLs and nats_tls_*)"
    if isinstance(err, NatsError) and "tls" in low and "required" in low:
        return f"NATS wants TLS: {text} (set nats_tls_ca, or a tls:// URL)"
    return None


async def _log_error(err: Exception) -> None:
    text = str(err).lower()
    if "permissions violation" in text or "authorization violation" in text:
        log.warning("NATS: %s", str(err).removeprefix("nats: "))  # least privilege: say why
    else:
        log.debug("NATS: %s", err)


async def open_connection(settings: OsirisSettings, *, name: str = "osiris",
                          reconnect: bool = True, **overrides: Any) -> NATS:
    """Connect to the servers of `settings` with its credentials and TLS.

    One short look first: `Unavailable` ("no NATS server at …") when no server answers.
    Then every listed server is tried until one takes us; credentials or TLS that a server
    refuses raise `NatsRefused` at once, naming the setting. With `reconnect=False` the
    connection does not come back after a loss (CLI verbs); with True it retries forever,
    every `RECONNECT_WAIT_S`, across all the servers (docs/deploy.md). `overrides` go to
    `nats.connect` as they are (e.g. `error_cb`).
    """
    opts = connect_options(settings, name=name)
    opts.update(overrides)
    if not nats_reachable(settings.nats_url):
        raise Unavailable(f"no NATS server at {settings.nats_url} (start one, or use "
                          "'osiris run' which embeds one)")
    user_cb: ErrorCallback = opts.pop("error_cb", None) or _log_error
    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    publishes = Refusals()

    async def error_cb(err: Exception) -> None:
        # while connecting, a refusal ends the attempt; once up, errors go to the caller's
        # callback (a refusal on reconnect is retried: the server may be fixed meanwhile)
        why = None if refused.done() else refusal(err, settings)
        if why is not None:
            refused.set_result(why)
            return
        publishes.note(err)
        await user_cb(err)

    try:
        if reconnect:
            nc = await _connect_all(opts, error_cb, refused)
        else:  # nats-py gives up at the first server that fails: try each in turn ourselves
            nc = await _first_that_takes(settings, opts, error_cb, refused)
        _REFUSALS[nc] = publishes
        return nc
    finally:
        if not refused.done():
            refused.set_result("")


async def _connect_all(opts: dict[str, Any], error_cb: ErrorCallback,
                       refused: asyncio.Future[str]) -> NATS:
    nc = NATS()
    connecting = asyncio.ensure_future(nc.connect(**opts, error_cb=error_cb))
    waits: set[asyncio.Future[Any]] = {connecting, refused}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if connecting.done() and not refused.done():
        connecting.result()
        return nc
    connecting.cancel()
    with contextlib.suppress(BaseException):
        await connecting
    with contextlib.suppress(Exception):
        await nc.close()
    raise NatsRefused(refused.result())


async def _first_that_takes(settings: OsirisSettings, opts: dict[str, Any],
                            error_cb: ErrorCallback, refused: asyncio.Future[str]) -> NATS:
    last: BaseException | None = None
    # a refused TCP connection is retried inside nats-py whatever allow_reconnect says:
    # look at each server first, and bound nats-py's own attempts
    once = {**opts, "allow_reconnect": False, "max_reconnect_attempts": 1}
    for server in opts.pop("servers"):
        if not nats_reachable(server):
            last = ConnectionRefusedError(f"nothing answers at {server}")
            continue
        nc = NATS()
        try:
            await nc.connect(**{**once, "servers": [server]}, error_cb=error_cb)
            return nc
        except (OSError, NatsError, TimeoutError) as e:
            last = e
            with contextlib.suppress(Exception):
                await nc.close()
            why = refused.result() if refused.done() else refusal(e, settings)
            if why is not None:
                raise NatsRefused(why) from None
    raise Unavailable(f"no NATS server at {settings.nats_url} took the connection ({last})")
