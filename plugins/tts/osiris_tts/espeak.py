"""espeak-ng through the `espeakng-loader` wheel's own library and voice data, via ctypes.

No apt package, no subprocess. The library keeps global state (one voice, one callback), so
the process shares a single initialised handle and every synthesis holds `_LOCK`.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from .errors import EngineUnavailable

__all__ = ["EspeakEngine"]

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.c_void_p)
_LOCK = threading.Lock()
_LIB: Any = None
_SAMPLE_RATE = 0
_CHUNKS: list[bytes] = []


def _collect(wav: Any, n: int, _events: Any) -> int:
    if n > 0 and wav:
        _CHUNKS.append(ctypes.string_at(wav, n * 2))
    return 0  # 0 = go on


_CALLBACK_REF = _CALLBACK(_collect)  # kept alive for the life of the process


def _library() -> tuple[Any, int]:
    """Load and initialise the library once per process (caller holds `_LOCK`)."""
    global _LIB, _SAMPLE_RATE
    if _LIB is not None:
        return _LIB, _SAMPLE_RATE
    try:
        import espeakng_loader  # type: ignore[import-untyped, unused-ignore]
    except ImportError as e:
        raise EngineUnavailable(
            "espeak-ng needs the 'espeakng-loader' wheel: pip install espeakng-loader") from e
    try:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        data = espeakng_loader.get_data_path()
    except (OSError, RuntimeError) as e:
        raise EngineUnavailable(f"espeak-ng library from espeakng-loader failed to load: {e}") \
            from e
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode(),
                                 _INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise EngineUnavailable(f"espeak_Initialize failed ({rate}) with data at {data}")
    lib.espeak_SetSynthCallback(_CALLBACK_REF)
    _LIB, _SAMPLE_RATE = lib, rate
    return lib, rate


class EspeakEngine:
    """espeak-ng at its native 22,050 Hz, mono int16. `exaggeration` widens the pitch range."""

    name = "espeak"
    supports_cloning = False
    device = "cpu"

    def __init__(self, voice: str = "en", words_per_minute: int = 175) -> None:
        with _LOCK:
            self._lib, self.sample_rate = _library()
            if self._lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EngineUnavailable(f"espeak-ng has no voice {voice!r} ([plugins.tts] voice)")
        self.voice = voice
        self.words_per_minute = max(80, min(450, words_per_minute))

    def synthesize(self, text: str, *, exaggeration: float = 0.5,
                   ref_wav: bytes | None = None) -> bytes:
        data = text.encode("utf-8") + b"\0"
        with _LOCK:
            lib = self._lib
            lib.espeak_SetVoiceByName(self.voice.encode())  # another engine may have changed it
            lib.espeak_SetParameter(_RATE, self.words_per_minute, 0)
            # Chatterbox's exaggeration (0..2, neutral 0.5) maps onto espeak's pitch range
            # (0 monotone .. 100, default 50): the closest knob espeak has to expressiveness.
            lib.espeak_SetParameter(_RANGE, max(0, min(100, round(exaggeration * 100))), 0)
            _CHUNKS.clear()
            err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0,
                                   _CHARS_UTF8 | _ENDPAUSE, None, None)
            if err == _EE_OK:
                err = lib.espeak_Synchronize()
            pcm = b"".join(_CHUNKS)
            _CHUNKS.clear()
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with code {err}")
        return pcm

    def close(self) -> None:
        """The library stays loaded for the process (re-initialising it is not safe)."""
