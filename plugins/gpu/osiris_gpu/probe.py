"""Memory probes: NVML (what the driver says, per device and per process) or the model
actors' own resident bytes (CPU machines, tests). Both return a `Reading`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from osiris_contracts.messages import GpuDevice


@dataclass
class Reading:
    used_bytes: int
    devices: list[GpuDevice] = field(default_factory=list)


class Probe(Protocol):
    name: str

    def read(self, resident: Iterable[tuple[str, int]]) -> Reading: ...

    def close(self) -> None: ...


class ActorsProbe:
    """Usage = the sum of what the model actors report as resident (`bytes_resident`)."""

    name = "actors"

    def read(self, resident: Iterable[tuple[str, int]]) -> Reading:
        items = [(n, b) for n, b in resident if b]
        used = sum(b for _, b in items)
        dev = GpuDevice(index=-1, name="model actors (reported resident bytes)", used_bytes=used,
                        processes=[{"actor": n, "used_bytes": b} for n, b in items])
        return Reading(used, [dev])

    def close(self) -> None:
        return None


class NvmlProbe:
    """Usage from NVML (`nvidia-ml-py`): used/total per device, per-process where the driver
    tells. Raises `pynvml.NVMLError` (e.g. `NVMLError_LibraryNotFound`) when there is no GPU."""

    name = "nvml"

    def __init__(self, devices: list[int]) -> None:
        import pynvml  # type: ignore[import-untyped]

        self.nvml: Any = pynvml
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            pynvml.nvmlShutdown()
            raise RuntimeError("NVML found no GPU")
        wanted = devices or list(range(count))
        bad = [i for i in wanted if not 0 <= i < count]
        if bad:
            pynvml.nvmlShutdown()
            raise ValueError(f"[plugins.gpu].devices: no GPU with index {bad} (found {count})")
        self.handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in wanted]

    def read(self, resident: Iterable[tuple[str, int]] = ()) -> Reading:
        nv = self.nvml
        devices: list[GpuDevice] = []
        for i, h in self.handles:
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            procs: list[dict[str, Any]] = []
            try:
                for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                    procs.append({"pid": int(p.pid), "used_bytes": _int(p.usedGpuMemory)})
            except nv.NVMLError:
                pass  # not supported on every driver / in every container
            name = nv.nvmlDeviceGetName(h)
            devices.append(GpuDevice(index=i, name=name.decode() if isinstance(name, bytes)
                                     else str(name), used_bytes=int(mem.used),
                                     total_bytes=int(mem.total), processes=procs))
        return Reading(sum(d.used_bytes for d in devices), devices)

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down anyway
            pass


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, int) else None


def open_probe(kind: str, devices: list[int]) -> tuple[Probe, str | None]:
    """The configured probe; `auto` falls back to the actors' numbers and says why."""
    if kind == "actors":
        return ActorsProbe(), None
    try:
        return NvmlProbe(devices), None
    except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound on CPU machines, etc.
        if kind == "nvml" or isinstance(e, ValueError):
            raise
        return ActorsProbe(), f"NVML unavailable ({type(e).__name__}: {e}); using the actors' resident bytes"
