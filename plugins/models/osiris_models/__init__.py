"""osiris-models: `osiris models tiny DIR` and the tiny-model builders (no actors).

Heavy imports (torch, transformers, gptqmodel, the GenAI builder) happen inside the build
steps, never at import: the CLI and the plugin registry stay fast.
"""

from __future__ import annotations

from typing import Any

from osiris_core import hookimpl

__all__ = ["build_tiny", "default_tiny_dir"]


def build_tiny(root: Any, progress: Any = None, force: bool = False) -> Any:
    """Build the tiny models under `root` (see `osiris_models.tiny`); a no-op when up to date."""
    from .tiny import build_tiny as _build

    return _build(root, progress, force)


def default_tiny_dir(data_dir: Any) -> Any:
    """Where `osiris demo` keeps the tiny models: `<data_dir>/models`."""
    from pathlib import Path

    return Path(data_dir) / "models"


@hookimpl
def register_commands(cli: Any) -> None:
    import click

    @cli.group(name="models")
    def models() -> None:
        """Build and inspect local models."""

    @models.command(name="tiny")
    @click.argument("directory", type=click.Path(file_okay=False))
    @click.option("--force", is_flag=True, help="Rebuild even when the folder is up to date.")
    def tiny(directory: str, force: bool) -> None:
        """Build the tiny test/demo models into DIRECTORY (offline, deterministic, seconds).

        DIRECTORY/hermes (HF Llama), hermes-gptq (4-bit GPTQ), phi3 (HF Phi-3), phi3-onnx
        (GenAI fp32 with LoRA inputs), phi3-onnx-int4, and LoRA adapters for both.
        """
        root = build_tiny(directory, progress=lambda m: click.echo(f"models: {m}"), force=force)
        click.echo(f"models: [plugins.hermes] model = \"{root / 'hermes'}\"")
        click.echo(f"models: [plugins.phi3] model = \"{root / 'phi3-onnx'}\"")
