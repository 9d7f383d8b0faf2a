"""Live profiling of this process: what the event loop and every other thread are doing.

pyinstrument samples only the thread it starts on, so a profile here is two samplers run
side by side for `seconds`:

- pyinstrument (`async_mode="disabled"`, 1 ms) on the event loop's thread: every coroutine,
  callback and the loop itself, with C calls it sees returning;
- a small `sys._current_frames()` sampler (a daemon thread, every `interval` s) for every other
  Python thread: executor threads (model generation, `asyncio.to_thread`), the NATS and
  granian threads. It sees Python frames only: a thread inside a C call (a torch matmul) shows
  the Python frame that made it.

Both feed one `Profile`: rendered as pyinstrument's HTML (one root per thread) or as a
speedscope file (https://www.speedscope.app/file-format-schema.json, one "sampled" profile
per thread, time in seconds, consecutive identical stacks merged). Weights are wall-clock
time: a thread blocked in `queue.get` or `Condition.wait` counts as much as a busy one, so
`Profile.top()` leaves those idle frames out.

One profile at a time per process (`ProfileBusy`, 409); `seconds` is bounded by the caller
(`osiris_core.protocol.ProfileArgs`: 0.1 … 60).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from osiris_core.errors import PayloadTooLarge, ServiceError
from osiris_core.protocol import ProfileFrame, ProfileResult

if TYPE_CHECKING:  # pyinstrument is imported when a profile is taken, not with the CLI
    from pyinstrument import Profiler
    from pyinstrument.session import Session

__all__ = ["Profile", "ProfileBusy", "ThreadProfile", "ThreadSampler", "decode_data",
           "encode_result", "profile_process", "profile_result"]

Format = Literal["speedscope", "html"]
SAMPLE_INTERVAL_S = 0.005
"""Other threads are sampled every 5 ms (pyinstrument samples the loop thread every 1 ms)."""
SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
IDLE_LEAVES = frozenset({
    ("wait", "threading.py"), ("_wait_for_tstate_lock", "threading.py"),
    ("get", "queue.py"), ("select", "selectors.py"), ("_worker", "thread.py"),
    ("run", "runners.py"), ("run_forever", "base_events.py"), ("_run_once", "base_events.py"),
    ("accept", "socket.py"), ("sleep", "<built-in>"), ("select", "<built-in>"),
    ("poll", "<built-in>"), ("epoll.poll", "<built-in>"), ("wait", "<built-in>"),
})
"""Leaf frames of a thread that waits (a blocked executor worker, an idle loop): left out of
`Profile.top()`, kept in the files."""
_lock = threading.Lock()


class ProfileBusy(ServiceError):
    """Another profile of this process is running."""

    code = 409


@dataclass
class ThreadProfile:
    """One thread's samples: stacks root first (pyinstrument frame identifiers:
    `function\\0file\\0line[\\1attributes]`), each with its wall-clock weight in seconds and
    how many samples saw it (consecutive identical stacks are one entry)."""

    name: str
    ident: int
    samples: list[tuple[tuple[str, ...], float, int]] = field(default_factory=list)

    def add(self, stack: tuple[str, ...], weight: float, count: int = 1) -> None:
        if self.samples and self.samples[-1][0] == stack:  # run-length: same stack again
            _, w, n = self.samples[-1]
            self.samples[-1] = (stack, w + weight, n + count)
        else:
            self.samples.append((stack, weight, count))

    def merged(self) -> ThreadProfile:
        """Identical stacks summed whatever their order (smaller; time order lost)."""
        total: dict[tuple[str, ...], tuple[float, int]] = {}
        for stack, w, n in self.samples:
            w0, n0 = total.get(stack, (0.0, 0))
            total[stack] = (w0 + w, n0 + n)
        return ThreadProfile(self.name, self.ident, [(k, w, n) for k, (w, n) in total.items()])


def _parse(identifier: str) -> tuple[str, str, int]:
    """(function, file, line) of a pyinstrument frame identifier."""
    base = identifier.split("\x01", 1)[0]
    parts = base.split("\x00")
    name, file = parts[0], parts[1] if len(parts) > 1 else ""
    try:
        line = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        line = 0
    cls = next((a[1:] for a in identifier.split("\x01")[1:] if a.startswith("c")), "")
    return (f"{cls}.{name}" if cls and "." not in name else name), file, line


@dataclass
class Profile:
    """A profile of every sampled thread of one process."""

    target: str
    start: float
    duration: float
    threads: list[ThreadProfile]
    interval: float = SAMPLE_INTERVAL_S
    loop_thread: str = ""

    @property
    def sample_count(self) -> int:
        return sum(n for t in self.threads for _, _, n in t.samples)

    def top(self, n: int = 10) -> list[ProfileFrame]:
        """The leaf frames seen in the most samples across threads (own time), idle waits
        left out."""
        own: dict[tuple[str, str, int], float] = {}
        hits: Counter[tuple[str, str, int]] = Counter()
        for t in self.threads:
            for stack, w, count in t.samples:
                if not stack:
                    continue
                leaf = _parse(stack[-1])
                if (leaf[0].rsplit(".", 1)[-1], os.path.basename(leaf[1])) in IDLE_LEAVES \
                        or (leaf[0], leaf[1]) in IDLE_LEAVES:
                    continue
                own[leaf] = own.get(leaf, 0.0) + w
                hits[leaf] += count
        return [ProfileFrame(name=k[0], file=k[1], line=k[2], seconds=round(own[k], 4),
                             samples=c) for k, c in hits.most_common(n)]

    # --- renderings ---------------------------------------------------------------------
    def speedscope(self) -> dict[str, Any]:
        """The speedscope file: shared frames, one "sampled" profile per thread."""
        frames: list[dict[str, Any]] = []
        index: dict[tuple[str, str, int], int] = {}

        def frame_id(identifier: str) -> int:
            key = _parse(identifier)
            i = index.get(key)
            if i is None:
                i = index[key] = len(frames)
                name, file, line = key
                frames.append({"name": name, "file": file, "line": line} if file
                              else {"name": name})
            return i

        profiles = []
        for t in sorted(self.threads, key=lambda t: t.name != self.loop_thread):
            samples = [[frame_id(f) for f in stack] for stack, _, _ in t.samples]
            weights = [round(w, 6) for _, w, _ in t.samples]
            profiles.append({"type": "sampled", "name": f"thread {t.name}", "unit": "seconds",
                             "startValue": 0, "endValue": round(sum(weights), 6),
                             "samples": samples, "weights": weights})
        return {"$schema": SPEEDSCOPE_SCHEMA, "shared": {"frames": frames},
                "profiles": profiles, "name": self.target, "activeProfileIndex": 0,
                "exporter": "osiris (pyinstrument + a thread sampler)"}

    def session(self) -> Session:
        """A pyinstrument Session of every thread (each under its own root frame)."""
        from pyinstrument.session import Session

        records: list[tuple[list[str], float]] = []
        top = f"{self.target}\x00<process>\x00{os.getpid()}"
        for t in self.threads:
            root = f"{t.name}\x00<thread>\x00{t.ident}"
            records.extend(([top, root, *stack], w) for stack, w, _ in t.samples)
        return Session(frame_records=records, start_time=self.start, duration=self.duration,
                       min_interval=0.001, max_interval=self.interval,
                       sample_count=len(records), start_call_stack=[top],
                       target_description=self.target, cpu_time=0.0,
                       sys_path=list(sys.path), sys_prefixes=[sys.prefix, sys.base_prefix])

    def html(self) -> str:
        from pyinstrument.renderers.html import HTMLRenderer

        rendered: str = HTMLRenderer().render(self.session())
        return rendered

    def render(self, fmt: Format) -> bytes:
        if fmt == "html":
            return self.html().encode()
        return json.dumps(self.speedscope(), separators=(",", ":")).encode()

    def merged(self) -> Profile:
        return Profile(self.target, self.start, self.duration,
                       [t.merged() for t in self.threads], self.interval, self.loop_thread)


def frame_identifier(frame: FrameType) -> str:
    """pyinstrument's identifier of a frame (`function\\0file\\0first line`, the class and
    current line as attributes), read without the frame's locals: pyinstrument's own
    `get_frame_info` materialises `f_locals` to find `self`, and doing that to a frame of a
    thread that is running (torch in an executor) crashed CPython 3.11 with a segfault."""
    code = frame.f_code
    ident = f"{code.co_name}\x00{code.co_filename}\x00{code.co_firstlineno}"
    owner, _, _ = code.co_qualname.rpartition(".")
    if owner and not owner.endswith("<locals>"):
        ident += f"\x01c{owner}"
    line = frame.f_lineno
    return ident if line is None else f"{ident}\x01l{line}"


class ThreadSampler(threading.Thread):
    """Samples the Python stack of every thread but `skip` (and itself) every `interval`."""

    def __init__(self, interval: float = SAMPLE_INTERVAL_S, skip: frozenset[int] = frozenset()):
        super().__init__(name="osiris-profiler", daemon=True)
        self.interval = interval
        self.skip = skip
        self.threads: dict[int, ThreadProfile] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        me = threading.get_ident()
        last = time.perf_counter()
        deadline = last + self.interval
        while not self._halt.wait(max(deadline - time.perf_counter(), 0.0)):
            now = time.perf_counter()
            weight, last = now - last, now
            deadline = max(deadline + self.interval, now)
            names = {t.ident: t.name for t in threading.enumerate()}
            frames = sys._current_frames()
            try:
                for ident, frame in frames.items():
                    if ident == me or ident in self.skip:
                        continue
                    stack: list[str] = []
                    f: Any = frame
                    while f is not None:
                        stack.append(frame_identifier(f))
                        f = f.f_back
                    stack.reverse()
                    tp = self.threads.get(ident)
                    if tp is None:
                        tp = self.threads[ident] = ThreadProfile(
                            names.get(ident, f"thread-{ident}"), ident)
                    tp.add(tuple(stack), weight)
            finally:
                del frames

    def stop(self) -> list[ThreadProfile]:
        self._halt.set()
        self.join(5)
        return list(self.threads.values())


def _loop_thread(profiler: Profiler, name: str, ident: int) -> ThreadProfile:
    session = profiler.last_session
    tp = ThreadProfile(name, ident)
    if session is None:
        return tp
    for stack, w in session.frame_records:
        # pyinstrument puts its own thread root first: ours is added when rendering
        tp.add(tuple(s for s in stack if "\x00<thread>\x00" not in s), w)
    return tp


async def profile_process(seconds: float, *, target: str = "",
                          interval: float = SAMPLE_INTERVAL_S) -> Profile:
    """Profile this whole process for `seconds` (call it on the event loop). Raises
    `ProfileBusy` while another profile of this process runs."""
    if not _lock.acquire(blocking=False):
        raise ProfileBusy("a profile of this process is already running: one at a time, "
                          "try again when it is done")
    try:
        from pyinstrument import Profiler

        me = threading.current_thread()
        profiler = Profiler(interval=0.001, async_mode="disabled")
        sampler = ThreadSampler(interval, skip=frozenset({threading.get_ident()}))
        t0, wall = time.perf_counter(), time.time()
        profiler.start()
        sampler.start()
        try:
            await asyncio.sleep(seconds)
        finally:
            profiler.stop()
            others = sampler.stop()
        loop = _loop_thread(profiler, f"{me.name} (event loop)", threading.get_ident())
        return Profile(target or f"{socket.gethostname()} pid {os.getpid()}", wall,
                       time.perf_counter() - t0, [loop, *others], interval, loop.name)
    finally:
        _lock.release()


def encode_result(profile: Profile, fmt: Format, budget: int, *, node: str = "") -> ProfileResult:
    """The wire form of a profile within `budget` bytes: the file gzip'ed and base64'd; when
    that is still too big, identical stacks are merged (time order lost, the flame graph and
    totals stay); else 413."""
    merged = False
    for candidate in (profile, profile.merged()):
        data = base64.b64encode(gzip.compress(candidate.render(fmt), 6)).decode()
        if len(data) + 8192 <= budget:  # room for the status, top frames and headers
            return profile_result(candidate, fmt, data, merged=merged, node=node)
        merged = True
    raise PayloadTooLarge(f"the {fmt} profile is {len(data):,} bytes compressed, more than "
                          f"this connection's max_payload allows ({budget:,}): profile for "
                          "fewer seconds, or raise max_payload on the NATS server",
                          size=len(data))


def profile_result(profile: Profile, fmt: Format, data: str, *, merged: bool = False,
                   node: str = "") -> ProfileResult:
    return ProfileResult(format=fmt, encoding="gzip+base64", data=data,
                         seconds=round(profile.duration, 3), samples=profile.sample_count,
                         threads=[t.name for t in profile.threads], top=profile.top(),
                         node=node or profile.target, pid=os.getpid(), merged=merged)


def decode_data(result: ProfileResult) -> bytes:
    """The file a `ProfileResult` carries."""
    raw = base64.b64decode(result.data)
    return gzip.decompress(raw) if result.encoding == "gzip+base64" else raw
