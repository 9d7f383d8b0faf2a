"""Load heavy third-party libraries without their banners, INFO chatter and progress bars.

torch, transformers, peft and gptqmodel print on import and on every load (ASCII banners,
"Loading weights" bars, torchao's missing-kernel warnings). Under `osiris run` that noise
interleaves with the runtime's own log lines, so model actors load inside `quiet()`. What the
libraries printed is shown after all if the load fails, so nothing useful is lost.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator

__all__ = ["NOISY_LOGGERS", "quiet"]

NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "gptqmodel", "tokenicer", "logbar",
                 "transformers", "accelerate", "peft", "optimum")


@contextlib.contextmanager
def quiet(level: int = logging.ERROR) -> Iterator[None]:
    """Raise the noisy libraries' loggers to `level`, turn off Hugging Face progress bars and
    capture what is printed to stdout/stderr meanwhile (replayed to stderr on an exception).

    Our own logging is unaffected: its handlers hold the real streams. Process-wide while it
    lasts (stdout is global): keep it around a load, not around serving.
    """
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # its own switch, read when a bar is made
        with contextlib.suppress(Exception):
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
    buf = io.StringIO()
    real_err = sys.stderr
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    except BaseException:
        real_err.write(buf.getvalue())
        raise
