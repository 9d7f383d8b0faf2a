"""Least-privilege NATS: one user per role, its permissions derived from the catalogue.

A role runs some plugins; what it may publish and subscribe follows from their actors'
declared handlers (services, events, durable consumers), the subjects they own in the
catalogue, and what each plugin says it *calls* (services of other roles, control subjects,
configured channels: its `NatsGrant`, hook `register_nats_role`). Nothing lists subjects
twice: a new service or durable consumer shows up in the next `osiris nats-config` on its
own. docs/deploy.md, "Least privilege".
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from osiris_core.config import Config
from osiris_core.errors import ConfigError
from osiris_core.nats.grants import NatsGrant
from osiris_core.plugins import LoadedPlugins, load_plugins
from osiris_core.subjects import (
    ACTOR_WANTED,
    DEADLETTER,
    PROFILE_PREFIX,
    RUNTIME_STATUS,
    Catalogue,
    cancel,
    control,
    starting,
)

__all__ = ["OPERATOR_ROLE", "Permissions", "Role", "combine", "inbox_prefix", "render",
           "role_permissions", "roles_of"]

JS = "$JS.API"
SRV_VERBS = ("PING", "INFO", "STATS")
OPERATOR = "operator"

USER_NAME = re.compile(r"[a-z][a-z0-9_]*")
"""A combined user's name (its password variable is OSIRIS_NATS_PASSWORD_<NAME upper>)."""

NODE_PROFILE = PROFILE_PREFIX + "*"
"""Every runtime answers its own `osiris.runtime.profile.<node>`; the operator asks."""


@dataclass(frozen=True)
class Role(NatsGrant):
    """A NATS user: the grants of the plugins its processes run, merged, and those plugins."""

    plugins: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.role


OPERATOR_ROLE = Role(OPERATOR, description="admin: every service and control subject, every "
                     "event, JetStream administration of the osiris streams, the CLI")


def merged(name: str, plugins: tuple[str, ...], parts: Sequence[NatsGrant],
           description: str) -> Role:
    """One role with the union of the `parts`' grants."""
    def union(attr: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(x for g in parts for x in getattr(g, attr)))

    return Role(name, requests=union("requests"), controls=union("controls"),
                gathers=any(g.gathers for g in parts),
                reads_events=any(g.reads_events for g in parts),
                cancels=any(g.cancels for g in parts), publishes=union("publishes"),
                subscribes=union("subscribes"), kv_buckets=union("kv_buckets"),
                description=description, plugins=plugins)


def roles_of(grants: Iterable[tuple[str, NatsGrant]]) -> list[Role]:
    """The roles the plugins' grants make, by name, and the operator last: grants naming the
    same role are one user with the union of their permissions."""
    by_role: dict[str, list[tuple[str, NatsGrant]]] = {}
    for plugin, grant in grants:
        if grant.role == OPERATOR or not USER_NAME.fullmatch(grant.role):
            raise ConfigError(f"plugin {plugin}: bad NATS role {grant.role!r} (lower-case "
                              "letters, digits and _, not operator)")
        by_role.setdefault(grant.role, []).append((plugin, grant))
    out: list[Role] = []
    for name, parts in sorted(by_role.items()):
        plugins = tuple(dict.fromkeys(p for p, g in parts if g.runs_actors))
        if not plugins:  # only other plugins' routes for a role nobody runs here
            continue
        gs = [g for _, g in parts]
        out.append(merged(name, plugins, gs,
                          "; ".join(dict.fromkeys(g.description for g in gs if g.description))))
    return [*out, OPERATOR_ROLE]


def combine(name: str, role_names: Iterable[str], roles: Iterable[Role]) -> Role:
    """One user for a process that hosts several roles (a compose service running the
    gateway, orchestrator and feedback together): the union of their grants, its own inbox."""
    by_name = {r.name: r for r in roles}
    parts: list[Role] = []
    for r in role_names:
        if r not in by_name:
            raise ConfigError(f"user {name}: unknown role {r!r} (roles: {', '.join(by_name)})")
        if r == OPERATOR:
            raise ConfigError(f"user {name}: the operator is a user of its own, not combined")
        parts.append(by_name[r])
    if not parts:
        raise ConfigError(f"user {name}: no roles")
    if name == OPERATOR or not USER_NAME.fullmatch(name):
        raise ConfigError(f"user name {name!r}: lower-case letters, digits and _ (starting "
                          "with a letter), not operator")
    plugins = tuple(dict.fromkeys(x for p in parts for x in p.plugins))
    return merged(name, plugins, parts, "roles " + ", ".join(p.name for p in parts))


def inbox_prefix(role: str) -> str:
    """Reply inboxes of a role's processes (`nats_inbox_prefix`): only it reads them."""
    return f"_INBOX_{role}"


@dataclass
class Permissions:
    """What one user may publish and subscribe (nats-server `permissions`)."""

    publish: set[str] = field(default_factory=set)
    subscribe: set[str] = field(default_factory=set)
    subscribe_deny: set[str] = field(default_factory=set)

    def as_conf(self) -> dict[str, Any]:
        sub: dict[str, Any] = {"allow": sorted(self.subscribe)}
        if self.subscribe_deny:
            sub["deny"] = sorted(self.subscribe_deny)
        return {"publish": {"allow": sorted(self.publish)}, "subscribe": sub}


@dataclass
class _Served:
    """A role's runtime side: what its actors serve and consume."""

    services: set[str] = field(default_factory=set)   # subjects it answers (callers reply-to)
    actors: set[str] = field(default_factory=set)


def _srv_subjects(actor: str) -> list[str]:
    return [s for v in SRV_VERBS for s in (f"$SRV.{v}", f"$SRV.{v}.{actor}", f"$SRV.{v}.{actor}.*")]


def _consumer(perms: Permissions, stream: str, consumer: str) -> None:
    """A durable pull consumer: create/bind it, fetch, ack/nak/term."""
    perms.publish |= {
        f"{JS}.CONSUMER.INFO.{stream}.{consumer}",
        f"{JS}.CONSUMER.CREATE.{stream}.{consumer}",
        f"{JS}.CONSUMER.CREATE.{stream}.{consumer}.>",
        f"{JS}.CONSUMER.DURABLE.CREATE.{stream}.{consumer}",
        f"{JS}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
        f"$JS.ACK.{stream}.{consumer}.>",
    }


def _streams(perms: Permissions, streams: Iterable[str], *, admin: bool = False) -> None:
    """`ensure_streams` (every runtime declares the catalogue's streams, so any process may
    come up first): info and create of those streams only — creating never changes a stream
    that exists. The operator also updates them (`osiris streams --apply`), reads, deletes
    messages (dead-letter replay) and lists consumers."""
    for s in streams:
        perms.publish |= {f"{JS}.STREAM.INFO.{s}", f"{JS}.STREAM.CREATE.{s}"}
        if admin:
            perms.publish |= {f"{JS}.STREAM.UPDATE.{s}",
                              f"{JS}.STREAM.MSG.GET.{s}", f"{JS}.STREAM.MSG.DELETE.{s}",
                              f"{JS}.DIRECT.GET.{s}", f"{JS}.DIRECT.GET.{s}.>",
                              f"{JS}.CONSUMER.INFO.{s}.*", f"{JS}.CONSUMER.LIST.{s}",
                              f"{JS}.CONSUMER.NAMES.{s}"}


def _kv(perms: Permissions, bucket: str) -> None:
    """A KV bucket its replicas share: create or bind it, get, put and watch its keys (an
    ordered push consumer delivered to the role's inbox, with flow control)."""
    stream = f"KV_{bucket}"
    perms.publish |= {
        f"{JS}.STREAM.INFO.{stream}", f"{JS}.STREAM.CREATE.{stream}",
        f"{JS}.STREAM.MSG.GET.{stream}", f"{JS}.DIRECT.GET.{stream}", f"{JS}.DIRECT.GET.{stream}.>",
        f"{JS}.CONSUMER.CREATE.{stream}", f"{JS}.CONSUMER.CREATE.{stream}.>",
        f"{JS}.CONSUMER.INFO.{stream}.*", f"{JS}.CONSUMER.DELETE.{stream}.*",
        f"$KV.{bucket}.>", f"$JS.FC.{stream}.>",
    }


def role_permissions(loaded: LoadedPlugins, roles: Iterable[Role]) -> dict[str, Permissions]:
    """Each role's permissions, from the loaded plugins' actors and the catalogue: first
    each role on its own (what its actors serve and consume, what it declares it calls),
    then the operator (everything the others may do), then the replies (a role answers
    into the inboxes of the roles that call it — known only once every role is built)."""
    roles = list(roles)
    cat: Catalogue = loaded.catalogue
    _check_requests(roles, cat)
    actors = {rec.name: list(rec.actors) for rec in loaded.active}
    perms: dict[str, Permissions] = {}
    served: dict[str, _Served] = {}
    for role in roles:
        perms[role.name], served[role.name] = _role_grants(role, actors, cat)
    every_actor = {a for s in served.values() for a in s.actors}
    for role in roles:
        if role.name == OPERATOR:
            _operator_grants(role, roles, perms, cat, every_actor)
    _reply_grants(roles, perms, served)
    return perms


def _check_requests(roles: list[Role], cat: Catalogue) -> None:
    """A role may only say it calls services: a typo'd or event subject fails here."""
    for role in roles:
        for name in role.requests:
            known = cat.get(name)
            if known is not None and known.kind != "service":
                raise ConfigError(f"role {role.name}: {name} is not a service in the catalogue")


def _role_grants(role: Role, actors: Mapping[str, list[Any]],
                 cat: Catalogue) -> tuple[Permissions, _Served]:
    """One role on its own: its actors' handlers, its runtime's subjects, and what it
    declares (publishes, subscribes, KV buckets, the services and controls it calls)."""
    p, mine = Permissions(), _Served()
    p.subscribe.add(f"{inbox_prefix(role.name)}.>")
    for plugin in role.plugins:
        for cls in actors.get(plugin, []):
            _actor_grants(p, mine, cls, cat)
    if role.plugins:
        _runtime_grants(p, mine, role, cat)
    p.subscribe |= mine.services | set(role.subscribes)
    _declared_grants(p, role, cat)
    return p, mine


def _actor_grants(p: Permissions, mine: _Served, cls: Any, cat: Catalogue) -> None:
    """An actor: it answers its services, control and discovery, consumes its events
    (durable ones through a consumer, dead letters on failure), publishes the events it owns."""
    mine.actors.add(cls.name)
    svc, evs = cls.handler_specs(cat.get)
    for spec in svc:
        mine.services |= {spec.subject, starting(spec.subject)}
    mine.services |= {control(cls.name), *_srv_subjects(cls.name)}
    for ev in evs:
        if ev.durable and ev.stream:
            _consumer(p, ev.stream, f"{cls.name}_{ev.consumer}")
            p.publish.add(DEADLETTER.name)
        else:
            p.subscribe.add(ev.subject)
    p.publish |= {s.name for s in cat if s.kind == "event" and s.owner == cls.name}


def _runtime_grants(p: Permissions, mine: _Served, role: Role, cat: Catalogue) -> None:
    """A runtime process: its status, its profile, the wanted signal, its streams."""
    mine.services |= {RUNTIME_STATUS.name, NODE_PROFILE}
    # its own inbox too: an actor may call another of the same role (a kernel its
    # planner);
    # and the read-only discovery pings of its own actors (a container's health
    # check, with the process's own credentials): never their control subjects
    p.publish |= {ACTOR_WANTED.name, f"{inbox_prefix(role.name)}.>",
                  *(f"$SRV.{v}.{a}" for a in mine.actors for v in ("PING", "INFO"))}
    _streams(p, sorted(cat.streams()))


def _declared_grants(p: Permissions, role: Role, cat: Catalogue) -> None:
    """What the role's grants say it does beyond its actors: subjects it publishes, KV
    buckets, reading every event, the services it calls (and may cancel), the actors it
    controls, gathering runtime status."""
    p.publish |= set(role.publishes)
    for bucket in role.kv_buckets:
        _kv(p, bucket)
    if role.reads_events:
        p.subscribe |= {s.name for s in cat if s.kind == "event"}
    for name in role.requests:
        known = cat.get(name)
        if known is None:  # its plugin is not installed here
            continue
        p.publish |= {name, starting(name)}
        if role.cancels:
            p.publish.add(cancel(known.owner))
    p.publish |= {control(a) for a in role.controls}
    if role.gathers:
        p.publish.add(RUNTIME_STATUS.name)


def _operator_grants(role: Role, roles: list[Role], perms: Mapping[str, Permissions],
                     cat: Catalogue, every_actor: set[str]) -> None:
    """The operator (a role without plugins): every osiris subject and stream, nobody
    else's replies."""
    p = perms[role.name]
    services = sorted(s.name for s in cat if s.kind == "service")
    events = sorted(s.name for s in cat if s.kind == "event")
    for other in perms.values():
        p.publish |= {s for s in other.publish if not s.startswith("_INBOX")}
    p.publish |= {*services, *(starting(s) for s in services), *events,
                  *(control(a) for a in every_actor), RUNTIME_STATUS.name, NODE_PROFILE,
                  "$SRV.>",
                  f"{JS}.INFO", f"{JS}.STREAM.NAMES", f"{JS}.STREAM.LIST"}
    _streams(p, sorted(cat.streams()), admin=True)
    p.subscribe = {">"}
    p.subscribe_deny = {"$JS.>", "_INBOX.>", *(f"{inbox_prefix(r.name)}.>" for r in roles
                                               if r is not role)}


def _reply_grants(roles: list[Role], perms: Mapping[str, Permissions],
                  served: Mapping[str, _Served]) -> None:
    """Replies: a role publishes into the inboxes of the roles that call what it serves."""
    for role in roles:
        mine = served[role.name]
        for caller in roles:
            asks = perms[caller.name].publish
            if caller is not role and mine.actors and (
                    mine.services & asks or "$SRV.>" in asks):
                perms[role.name].publish.add(f"{inbox_prefix(caller.name)}.>")


def generate_password() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str, cost: int = 11) -> str:
    """bcrypt, as nats-server checks it (`$2b$…`, any cost it accepts)."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def render(perms: Mapping[str, Permissions], passwords: Mapping[str, str], *,
           store_dir: str = "", listen: str = "", max_payload: int = 0,
           header: str = "", users_only: bool = False, password_refs: bool = False) -> str:
    """A nats-server configuration: JetStream on, one user per role. `password_refs`: the
    passwords are variable references (`$NAME`), written bare so nats-server reads them from
    its environment. `users_only`: just the `authorization` block, to `include` from a
    server configuration of your own."""
    lines = [f"# {line}" for line in header.splitlines()]
    if not users_only:
        if listen:
            lines.append(f"listen: {json.dumps(listen)}")
        if max_payload:
            lines.append(f"max_payload: {max_payload}")
        lines.append(f"jetstream: {{store_dir: {json.dumps(store_dir)}}}" if store_dir
                     else "jetstream: enabled")
    lines.append("authorization: {\n  users: [")
    for name, p in perms.items():
        password = passwords[name]
        body = json.dumps({"user": name, "password": password,
                           "permissions": p.as_conf()}, indent=2)
        if password_refs:
            if not is_variable(password):
                raise ValueError(f"not a variable reference: {password!r}")
            body = body.replace(json.dumps(password), password, 1)
        lines.append("    " + body.replace("\n", "\n    ") + ",")
    lines.append("  ]\n}")
    return "\n".join(lines) + "\n"


def is_variable(password: str) -> bool:
    """`$NAME`: a nats-server variable reference, resolved from its environment."""
    return len(password) > 1 and password[0] == "$" and password[1:].isidentifier()


def load_for(config: Config) -> tuple[LoadedPlugins, list[Role]]:
    """Every installed plugin with its validated config, and the roles their grants make."""
    loaded = load_plugins(None)
    configs: dict[str, Any] = dict(loaded.validate_configs(config))
    loaded.collect_actors(configs)
    grants: list[tuple[str, NatsGrant]] = []

    def kwargs(rec: Any) -> dict[str, Any]:
        def register(grant: NatsGrant) -> None:
            if not isinstance(grant, NatsGrant):
                raise TypeError(f"register_nats_role takes a NatsGrant, got {grant!r}")
            grants.append((rec.name, grant))

        return {"register": register, "config": configs.get(rec.name)}

    loaded.call_each("register_nats_role", kwargs)
    return loaded, roles_of(grants)
