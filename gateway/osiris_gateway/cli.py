"""`osiris gateway` (and `python -m osiris_gateway`): the gateway alone, under granian."""

from __future__ import annotations

import click

from osiris_core.config import DEFAULT_CONFIG_FILE
from osiris_core.observability.logs import notice, setup_logging

__all__ = ["gateway_command"]


@click.command(name="gateway")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="osiris.toml to use (default: ./osiris.toml, then built-in defaults).")
@click.option("--host", default=None, help="Override [plugins.gateway].host.")
@click.option("--port", type=int, default=None, help="Override [plugins.gateway].port.")
@click.option("--workers", type=int, default=None, help="Granian worker processes.")
def gateway_command(config_path: str | None, host: str | None, port: int | None,
                    workers: int | None) -> None:
    """Serve the HTTP gateway alone (granian + uvloop) against a running osiris system."""
    import os

    from .app import load_gateway_config
    from .server import serve_granian

    if config_path is None and os.path.isfile(DEFAULT_CONFIG_FILE):
        config_path = DEFAULT_CONFIG_FILE
    setup_logging(None)  # OSIRIS_LOG_FORMAT: a bad value fails here, naming it
    config, gw = load_gateway_config(config_path)  # fails early, naming the bad key
    notice(f"osiris gateway: http://{host or gw.host}:{port or gw.port} "
           f"(NATS {config.settings.nats_url})")
    serve_granian(host or gw.host, port or gw.port, workers or gw.workers, config_path,
                  config.settings.log_level)
