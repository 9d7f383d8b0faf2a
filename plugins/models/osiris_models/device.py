"""The torch device a model actor or job runs on, from its `device` setting: one rule for
hermes and the trainer."""

from __future__ import annotations

from osiris_core.errors import Unavailable

__all__ = ["DeviceUnavailable", "resolve_device"]


class DeviceUnavailable(Unavailable):
    """The configured device is not on this machine (503: the model cannot load here)."""


def resolve_device(device: str, setting: str) -> str:
    """`device` as torch should use it; `setting` names the config key in errors
    (`"[plugins.hermes].device"`).

    - `"auto"`: `"cuda"` when torch sees a CUDA device, else `"cpu"`;
    - `"cuda"` / `"cuda:N"`: itself, when torch sees CUDA and, for `N`, that device exists —
      refused here, naming the setting, rather than deep inside the model load as
      "invalid device ordinal" (or a silent CPU fallback);
    - anything else torch knows (`"cpu"`, `"mps"`, …): itself; a typo is refused.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceUnavailable(f"{setting} is {device!r}, not a device torch knows (auto, cpu, "
                                "cuda, cuda:N)", field="device") from None
    if parsed.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"{setting} is {device!r} but torch sees no CUDA device here "
                                "(set it to 'auto' or 'cpu')", field="device")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        have = ", ".join(f"cuda:{i}" for i in range(count))
        raise DeviceUnavailable(f"{setting} is {device!r} but this machine has {count} CUDA "
                                f"device{'s' if count != 1 else ''} ({have})", field="device")
    return device
