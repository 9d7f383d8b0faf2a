"""`python -m osiris_gateway [-c FILE] [--host H] [--port P]`."""

from osiris_gateway.cli import gateway_command

gateway_command(prog_name="python -m osiris_gateway")
