"""`osiris nats-config`: a nats-server configuration with one least-privilege user per role."""

from __future__ import annotations

import os
from pathlib import Path

import click

from osiris_core.cli.kit import config_option, get_config
from osiris_core.errors import ConfigError
from osiris_core.nats.server import MAX_PAYLOAD
from osiris_core.ops.natsconfig import (
    OPERATOR,
    Role,
    combine,
    generate_password,
    hash_password,
    inbox_prefix,
    load_for,
    render,
    role_permissions,
)

__all__ = ["PASSWORD_ENV", "nats_config"]

PASSWORD_ENV = "OSIRIS_NATS_PASSWORD_{role}"
"""With --password-env, each role's password comes from this variable (role upper-cased)."""
BCRYPT_COST = 11


def _passwords(roles: list[Role], how: str) -> dict[str, str]:
    """Each user's password: generated, from OSIRIS_NATS_PASSWORD_<USER> now (`env`), or a
    reference to that variable for nats-server to resolve when it starts (`ref`)."""
    out: dict[str, str] = {}
    missing: list[str] = []
    for role in roles:
        var = PASSWORD_ENV.format(role=role.name.upper())
        if how == "ref":
            out[role.name] = "$" + var
        elif how == "env":
            value = os.environ.get(var, "")
            if not value:
                missing.append(var)
            out[role.name] = value
        else:
            out[role.name] = generate_password()
    if missing:
        raise click.UsageError(f"--password-env: not set: {', '.join(missing)}")
    return out


def _users(specs: tuple[str, ...], roles: list[Role]) -> list[Role]:
    """`NAME=ROLE,ROLE` per process that hosts several roles, and the operator."""
    if not specs:
        return roles
    users: list[Role] = []
    for spec in specs:
        name, sep, parts = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"{spec!r}: expected NAME=ROLE[,ROLE...]",
                                     param_hint="--user")
        try:
            users.append(combine(name.strip(), [r.strip() for r in parts.split(",") if r.strip()],
                                 roles))
        except ConfigError as e:
            raise click.BadParameter(str(e), param_hint="--user") from None
    names = [u.name.upper() for u in users]  # the password variables' names
    if len(set(names)) != len(names):
        raise click.BadParameter(f"a user name given twice: {names}", param_hint="--user")
    return users + [r for r in roles if r.name == OPERATOR]


def _secrets_toml(roles: list[Role], passwords: dict[str, str], url: str) -> str:
    lines = ["# osiris nats-config: each role's [osiris] connection keys. Keep this file",
             "# private (0600); give each process only its own role's lines.", ""]
    for role in roles:
        lines += [f"# {role.description}", f"[{role.name}]", f'nats_url = "{url}"',
                  f'nats_user = "{role.name}"', f'nats_password = "{passwords[role.name]}"',
                  f'nats_inbox_prefix = "{inbox_prefix(role.name)}"', ""]
    return "\n".join(lines)


@click.command("nats-config")
@config_option
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the server configuration here (default: stdout).")
@click.option("--secrets", "secrets_path", type=click.Path(dir_okay=False), default=None,
              help="Where the generated passwords go, as [osiris] keys per role (default: "
                   "OUT.secrets.toml, or ./nats-secrets.toml when printing to stdout).")
@click.option("--password-env", is_flag=True,
              help="Take each role's password from OSIRIS_NATS_PASSWORD_<ROLE> instead of "
                   "generating one (no secrets file is written).")
@click.option("--plain-passwords", is_flag=True,
              help="Write the passwords as they are instead of bcrypt hashes.")
@click.option("--password-ref", is_flag=True,
              help="Write each password as the variable $OSIRIS_NATS_PASSWORD_<USER>, which "
                   "nats-server reads from its environment when it starts (no secrets in the "
                   "file, none written).")
@click.option("--user", "users", multiple=True, metavar="NAME=ROLE,ROLE",
              help="One user for a process that hosts several roles, with their grants "
                   "together (repeatable); then only these users and the operator are "
                   "written.")
@click.option("--users-only", is_flag=True,
              help="Write only the authorization block, to include from a server "
                   "configuration of your own.")
@click.option("--store-dir", default="", help="JetStream store directory of the server.")
@click.option("--listen", default="", help="HOST:PORT the server listens on (default 4222).")
def nats_config(config_path: str | None, out: str | None, secrets_path: str | None,
                password_env: bool, plain_passwords: bool, password_ref: bool,
                users: tuple[str, ...], users_only: bool, store_dir: str,
                listen: str) -> None:
    """A nats-server config: JetStream and one least-privilege user per role.

    Each role (the installed plugins name theirs: gateway, models, orchestrator, …, and the
    operator) may publish and subscribe only what its plugins' actors serve, consume, own
    and call, derived from the subject catalogue and each plugin's grant; replies go to
    per-role inboxes. See docs/deploy.md.
    """
    if password_env and password_ref:
        raise click.UsageError("--password-env and --password-ref exclude each other")
    config = get_config(config_path)
    loaded, known = load_for(config)
    roles = _users(users, known)
    target = None if password_env or password_ref else Path(
        secrets_path or (f"{out}.secrets.toml" if out else "nats-secrets.toml"))
    if target is not None and target.exists() and not secrets_path:
        raise ConfigError(f"{target} exists: pass --secrets PATH (or --password-env) so the "
                          "passwords of an earlier run are not overwritten")
    perms = role_permissions(loaded, roles)
    passwords = _passwords(roles, "ref" if password_ref else "env" if password_env else "new")
    stored = passwords if plain_passwords or password_ref else {
        r: hash_password(p, BCRYPT_COST) for r, p in passwords.items()}
    text = render(perms, stored, store_dir=store_dir, listen=listen, max_payload=MAX_PAYLOAD,
                  users_only=users_only, password_refs=password_ref,
                  header="osiris nats-config: one least-privilege user per role "
                         "(docs/deploy.md).\nRun osiris processes with nats_user, "
                         "nats_password and nats_inbox_prefix of their role.")
    if plain_passwords:
        click.echo("osiris: warning: passwords are written in the clear (--plain-passwords): "
                   "keep the file private", err=True)
    if out:
        Path(out).write_text(text)
        os.chmod(out, 0o600)
        click.echo(f"osiris: nats-server config for {len(perms)} users written to {out}",
                   err=True)
    else:
        click.echo(text, nl=False)
    if target is not None:
        target.write_text(_secrets_toml(roles, passwords, config.settings.nats_url))
        os.chmod(target, 0o600)
        click.echo(f"osiris: role passwords written to {target} (mode 0600)", err=True)
