"""Connection settings against real nats-servers: several URLs, user/password, token, NKey,
a JWT creds file (operator mode), TLS with a CA and a client certificate; refused
credentials fail at once, naming the setting; a secured deployment that is down is never
replaced by an embedded server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import nkeys
import pytest

from osiris_core.config import OsirisSettings, load_config
from osiris_core.errors import ConfigError, OsirisError, Unavailable
from osiris_core.nats.bus import Bus
from osiris_core.nats.connection import (
    NatsRefused,
    connect_options,
    open_connection,
    plain_settings,
    secured,
    server_urls,
)
from osiris_core.nats.server import EmbeddedNats, free_port
from osiris_core.runtime.node import Runtime

REFUSE_WITHIN_S = 5.0  # nats-py alone would retry a refused password forever


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    """`server(config_text)` → a nats-server (JetStream) with that configuration."""
    started: list[EmbeddedNats] = []

    def start(config: str) -> EmbeddedNats:
        srv = EmbeddedNats(tmp_path / f"nats{len(started)}", config=config)
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def settings(url: str, **keys: Any) -> OsirisSettings:
    return OsirisSettings(nats_url=url, **keys)


async def round_trip(s: OsirisSettings, **kw: Any) -> None:
    """Connect with `s`, answer one request ourselves, close."""
    nc = await open_connection(s, name="test", **kw)
    try:
        async def echo(msg: Any) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("t.echo", cb=echo)
        assert (await nc.request("t.echo", b"hi", timeout=2)).data == b"hi"
    finally:
        await nc.close()


async def refused(s: OsirisSettings, **kw: Any) -> str:
    with pytest.raises(NatsRefused) as info:
        await asyncio.wait_for(open_connection(s, name="test", **kw), REFUSE_WITHIN_S)
    return str(info.value)


# --- settings → options -------------------------------------------------------------------
def test_env_names_every_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"OSIRIS_NATS_USER": "gateway", "OSIRIS_NATS_PASSWORD": "pw",
           "OSIRIS_NATS_NKEY": "/k.nk", "OSIRIS_NATS_TLS_CA": "/ca.pem",
           "OSIRIS_NATS_TLS_CERT": "/c.pem", "OSIRIS_NATS_TLS_KEY": "/c.key",
           "OSIRIS_NATS_TLS_HOSTNAME": "nats.internal",
           "OSIRIS_NATS_INBOX_PREFIX": "_INBOX_gateway"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_config(None, search_cwd=False).settings
    assert (s.nats_user, s.nats_password, s.nats_nkey, s.nats_tls_ca, s.nats_tls_cert,
            s.nats_tls_key, s.nats_tls_hostname, s.nats_inbox_prefix) == tuple(env.values())


def test_options_list_every_server_and_carry_the_credentials() -> None:
    s = settings(" nats://a:4222, b:4223 ,tls://c:4224", nats_user="u", nats_password="p",
                 nats_token="t", nats_inbox_prefix="_INBOX_u")
    opts = connect_options(s, name="n")
    assert opts["servers"] == ["nats://a:4222", "nats://b:4223", "tls://c:4224"]
    assert (opts["user"], opts["password"], opts["token"], opts["inbox_prefix"]) == \
        ("u", "p", "t", "_INBOX_u")
    assert opts["max_reconnect_attempts"] == -1 and "tls" not in opts
    assert secured(s) and not secured(settings("nats://127.0.0.1:4222"))
    assert server_urls("") == []


@pytest.mark.parametrize(("keys", "named"), [
    ({"nats_creds": "/nowhere.creds"}, "nats_creds"),
    ({"nats_nkey": "/nowhere.nk"}, "nats_nkey"),
    ({"nats_tls_ca": "/nowhere.pem"}, "nats_tls_ca"),
    ({"nats_tls_cert": "/c.pem"}, "nats_tls_key"),
    ({"nats_user": "u"}, "nats_password"),
])
def test_a_bad_setting_is_named_before_any_connection(keys: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        connect_options(settings("nats://127.0.0.1:4222", **keys))


# --- servers ------------------------------------------------------------------------------
@pytest.mark.parametrize("reconnect", [True, False])
async def test_two_urls_whose_first_is_dead_connect_to_the_second(
        server: Any, reconnect: bool) -> None:
    srv = server("")
    dead = f"nats://127.0.0.1:{free_port()}"
    await round_trip(settings(f"{dead},{srv.url}"), reconnect=reconnect)


async def test_no_server_at_any_url_is_unavailable() -> None:
    urls = f"nats://127.0.0.1:{free_port()},nats://127.0.0.1:{free_port()}"
    with pytest.raises(Unavailable, match="no NATS server"):
        await open_connection(settings(urls))


# --- user/password, token, nkey -----------------------------------------------------------
@pytest.mark.parametrize("reconnect", [True, False])
async def test_user_and_password(server: Any, reconnect: bool) -> None:
    srv = server('authorization { user: "alice", password: "s3cret" }\n')
    await round_trip(settings(srv.url, nats_user="alice", nats_password="s3cret"),
                     reconnect=reconnect)
    why = await refused(settings(srv.url, nats_user="alice", nats_password="wrong"),
                        reconnect=reconnect)
    assert why == ("NATS refused the connection: authorization violation "
                   "(check nats_user/nats_password)")


async def test_token(server: Any) -> None:
    srv = server('authorization { token: "t0ken" }\n')
    await round_trip(settings(srv.url, nats_token="t0ken"))
    assert "(check nats_token)" in await refused(settings(srv.url, nats_token="nope"))
    assert "set nats_user/nats_password, nats_token" in await refused(settings(srv.url))


def write_seed(path: Path, prefix: int = nkeys.PREFIX_BYTE_USER) -> tuple[Path, str]:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    path.write_bytes(seed + b"\n")
    return path, nkeys.from_seed(bytearray(seed)).public_key.decode()


async def test_nkey_seed_file(server: Any, tmp_path: Path) -> None:
    seed, public = write_seed(tmp_path / "user.nk")
    other, _ = write_seed(tmp_path / "other.nk")
    srv = server(f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n')
    await round_trip(settings(srv.url, nats_nkey=str(seed)))
    assert "(check nats_nkey)" in await refused(settings(srv.url, nats_nkey=str(other)))


# --- creds (JWT, operator mode) -----------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(signer: nkeys.KeyPair, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (v2): claims signed with ed25519 by `signer` (what `nsc` writes)."""
    claims: dict[str, Any] = {"iat": int(time.time()), "iss": signer.public_key.decode(),
                              "name": name, "sub": subject, "nats": {**nats, "version": 2}}
    claims["jti"] = base64.b32encode(
        hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = f"{head}.{_b64(json.dumps(claims).encode())}"
    return f"{body}.{_b64(signer.sign(body.encode()))}"


def keypair(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


def creds_file(path: Path, account: nkeys.KeyPair) -> Path:
    user = keypair(nkeys.PREFIX_BYTE_USER)
    jwt = make_jwt(account, user.public_key.decode(), "svc",
                   {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1,
                    "payload": -1})
    path.write_text(f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
                    f"-----BEGIN USER NKEY SEED-----\n{user.seed.decode()}\n"
                    "------END USER NKEY SEED------\n")
    return path


async def test_creds_file_in_operator_mode(server: Any, tmp_path: Path) -> None:
    operator, account = keypair(nkeys.PREFIX_BYTE_OPERATOR), keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    op_pub, acc_pub = operator.public_key.decode(), account.public_key.decode()
    op_jwt = make_jwt(operator, op_pub, "op", {"type": "operator"})
    acc_jwt = make_jwt(operator, acc_pub, "osiris",
                       {"type": "account", "limits": {"subs": -1, "conn": -1, "data": -1,
                                                      "payload": -1, "imports": -1,
                                                      "exports": -1, "leaf": -1,
                                                      "wildcards": True}})
    system = keypair(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream wants a system account
    sys_pub = system.public_key.decode()
    sys_jwt = make_jwt(operator, sys_pub, "SYS", {"type": "account"})
    srv = server(f'operator: "{op_jwt}"\nsystem_account: {sys_pub}\nresolver: MEMORY\n'
                 f'resolver_preload: {{ {acc_pub}: "{acc_jwt}", {sys_pub}: "{sys_jwt}" }}\n')
    good = creds_file(tmp_path / "good.creds", account)
    await round_trip(settings(srv.url, nats_creds=str(good)))
    stranger = creds_file(tmp_path / "bad.creds", keypair(nkeys.PREFIX_BYTE_ACCOUNT))
    assert "(check nats_creds)" in await refused(settings(srv.url, nats_creds=str(stranger)))


# --- TLS ----------------------------------------------------------------------------------
def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(d: Path, name: str = "ca") -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    d.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN=osiris test {name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                     ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout",
                f"{who}.key", "-out", f"{who}.csr", cwd=d)
        (d / f"{who}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", f"{name}.pem", "-CAkey",
                f"{name}.key", "-CAcreateserial", "-days", "2", "-extfile", f"{who}.ext",
                "-out", f"{who}.pem", cwd=d)
    return d


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def test_tls_with_a_ca_and_a_client_certificate(server: Any, pki: Path) -> None:
    srv = server(f'tls {{ cert_file: "{pki}/server.pem", key_file: "{pki}/server.key", '
                 f'ca_file: "{pki}/ca.pem", verify: true, timeout: 2 }}\n')
    s = settings(srv.url, nats_tls_ca=str(pki / "ca.pem"), nats_tls_cert=str(pki / "client.pem"),
                 nats_tls_key=str(pki / "client.key"))
    assert isinstance(connect_options(s)["tls"], ssl.SSLContext)
    await round_trip(s)
    # no client certificate: the server ends the handshake; no retry loop, a clear error
    no_cert = msgspec.structs.replace(s, nats_tls_cert="", nats_tls_key="")
    with pytest.raises(OsirisError):
        await asyncio.wait_for(open_connection(no_cert, reconnect=False), REFUSE_WITHIN_S)


async def test_a_server_certificate_from_another_ca_is_refused_at_once(
        server: Any, pki: Path, tmp_path: Path) -> None:
    srv = server(f'tls {{ cert_file: "{pki}/server.pem", key_file: "{pki}/server.key" }}\n')
    other = make_pki(tmp_path / "other", "other")
    why = await refused(settings(srv.url, nats_tls_ca=str(other / "other.pem")))
    assert why.startswith("NATS TLS handshake failed") and "nats_tls_ca" in why


# --- the embedded fallback ----------------------------------------------------------------
def config_file(tmp_path: Path, **osiris: Any) -> Path:
    path = tmp_path / "osiris.toml"
    path.write_bytes(msgspec.toml.encode({"osiris": {"plugins": [], "data_dir": str(
        tmp_path / "data"), **osiris}}))
    return path


@pytest.mark.parametrize("keys", [
    {"nats_user": "gateway", "nats_password": "pw"},
    {"nats_token": "t"},
    {"nats_url": f"nats://127.0.0.1:{free_port()},nats://127.0.0.1:{free_port()}"},
])
def test_a_secured_deployment_that_is_down_is_not_replaced_by_an_embedded_server(
        tmp_path: Path, keys: dict[str, str]) -> None:
    keys = {"nats_url": f"nats://127.0.0.1:{free_port()}", **keys}
    rt = Runtime(load_config(config_file(tmp_path, **keys)))
    with pytest.raises(OsirisError, match="not starting an embedded one"):
        rt._nats_url()
    assert rt.embedded is None and not (tmp_path / "data" / "nats").exists()


async def test_one_local_url_without_credentials_still_embeds(tmp_path: Path) -> None:
    rt = Runtime(load_config(config_file(tmp_path, nats_url=f"nats://127.0.0.1:{free_port()}",
                                         nats_inbox_prefix="_INBOX_me")))
    await rt.start()
    try:
        assert rt.embedded is not None and rt.bus is not None
        assert rt.bus.nc.new_inbox().startswith("_INBOX_me.")
        assert Bus(rt.bus.nc) is not None
    finally:
        await rt.stop()


def test_the_embedded_server_gets_plain_settings() -> None:
    s = plain_settings(settings("nats://x:1", nats_user="u", nats_password="p",
                                nats_tls_ca="/ca", nats_inbox_prefix="_INBOX_u"), "nats://y:2")
    assert not secured(s) and s.nats_url == "nats://y:2" and s.nats_inbox_prefix == "_INBOX_u"
