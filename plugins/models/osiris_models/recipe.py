"""A model build as a list of named steps with a manifest: resumable, locked, a no-op when
up to date. `osiris models tiny` and `osiris models small` are both recipes.

Each step writes into its own folder through `staged()` (a temp folder renamed into place),
so a killed build leaves no half-written output and resumes at the step it was in.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osiris_core.observability.quiet import quiet

Progress = Callable[[str], None]
Step = tuple[str, Callable[[Path], None]]

LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "gptqmodel", "onnxruntime-genai")


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the libraries whose output a build depends on ("missing" when absent)."""
    from importlib.metadata import version

    out = {}
    for pkg in (*LIBRARIES, *extra):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            out[pkg] = "missing"
    return out


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """Yield a temp folder next to `final`; on success it replaces `final` atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Recipe:
    """What a build is: its name (the manifest is `<name>.json`), a version to bump when any
    step changes what it writes, the steps in order and the outputs they leave."""

    name: str
    version: int
    steps: list[Step]
    outputs: list[str]
    inputs: Callable[[], dict[str, str]] = library_versions
    """What else the build depends on (library versions, a source file's hash): a change
    rebuilds."""

    @property
    def manifest(self) -> str:
        return f"{self.name}.json"

    def read_manifest(self, root: Path) -> dict[str, Any]:
        try:
            data = json.loads((root / self.manifest).read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def is_complete(self, root: Path) -> bool:
        """True when `root` holds every output of this recipe (built with any inputs)."""
        m = self.read_manifest(root)
        return (m.get("recipe") == self.version
                and set(m.get("done", [])) >= {n for n, _ in self.steps}
                and all((root / p).exists() for p in self.outputs))

    def is_up_to_date(self, root: Path) -> bool:
        """True when `root` holds a complete build of this recipe from these inputs."""
        return self.is_complete(root) and self.read_manifest(root).get("versions") == self.inputs()

    def build(self, root: Path | str, progress: Progress | None = None,
              force: bool = False) -> Path:
        """Run the steps not yet done under `root` (all of them with `force`) → `root`."""
        root = Path(root).expanduser().resolve()
        say = progress or (lambda _msg: None)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        with _lock(root):
            if not force and self.is_up_to_date(root):
                say(f"{self.name} models in {root} are up to date")
                return root
            m = self.read_manifest(root)
            inputs = self.inputs()
            same = m.get("recipe") == self.version and m.get("versions") == inputs and not force
            done: list[str] = list(m.get("done", [])) if same else []
            t_all = time.perf_counter()
            n = len(self.steps)
            for i, (name, fn) in enumerate(self.steps, 1):
                if name in done:
                    say(f"[{i}/{n}] {name}: up to date")
                    continue
                t0 = time.perf_counter()
                say(f"[{i}/{n}] {name} …")
                with quiet(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # third-party deprecations, not ours
                    fn(root)
                    # finalise what the libraries left for the garbage collector (gptqmodel's
                    # TemporaryDirectory objects) here, where their ResourceWarning is ignored,
                    # not later inside whatever test or request happens to trigger the GC
                    gc.collect()
                done.append(name)
                (root / self.manifest).write_text(json.dumps(
                    {"recipe": self.version, "versions": inputs, "done": done,
                     "outputs": self.outputs}, indent=2))
                say(f"[{i}/{n}] {name}: done in {time.perf_counter() - t0:.1f}s")
            say(f"{self.name} models ready in {root} ({time.perf_counter() - t_all:.1f}s)")
        return root
