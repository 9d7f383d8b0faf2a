"""`resolve_device`: hermes and the trainer read their `device` setting by one rule."""

from __future__ import annotations

import pytest
import torch
from osiris_models.device import DeviceUnavailable, resolve_device

SETTING = "[plugins.hermes].device"


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch sees exactly one CUDA device (cuda:0), as on a one-GPU host."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_cuda_1_on_a_one_gpu_host_is_refused_naming_the_setting_and_the_devices(
        one_gpu: None) -> None:
    with pytest.raises(DeviceUnavailable) as e:
        resolve_device("cuda:1", SETTING)
    assert e.value.code == 503 and e.value.field == "device"
    assert e.value.message == ("[plugins.hermes].device is 'cuda:1' but this machine has 1 CUDA "
                               "device (cuda:0)")


def test_cuda_and_an_existing_index_pass_unchanged(one_gpu: None) -> None:
    assert resolve_device("cuda", SETTING) == "cuda"
    assert resolve_device("cuda:0", SETTING) == "cuda:0"
    assert resolve_device("auto", SETTING) == "cuda"


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_any_cuda_device_without_cuda_is_refused(no_gpu: None, device: str) -> None:
    with pytest.raises(DeviceUnavailable, match=r"torch sees no CUDA device here"):
        resolve_device(device, "[plugins.trainer].device")


def test_auto_is_the_cpu_without_cuda_and_a_typo_is_refused(no_gpu: None) -> None:
    assert resolve_device("auto", SETTING) == "cpu"
    assert resolve_device("cpu", SETTING) == "cpu"
    with pytest.raises(DeviceUnavailable, match=r"'gpu', not a device torch knows"):
        resolve_device("gpu", SETTING)
