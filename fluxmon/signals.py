"""Waiting for SIGINT or SIGTERM without sleeping through one.

The kernel hands a process-directed signal to any thread that does not block it. CPython's C-level handler then
only sets a flag for the main thread, and a main thread blocked in `threading.Event.wait()` without a timeout
never looks at that flag: it sleeps through the signal (seen as a `fluxmon sim` that ignored SIGTERM about one
time in five once it ran a dozen threads). `signal.set_wakeup_fd` makes the C handler also write to a pipe, from
whichever thread it ran on; the main thread blocks reading that pipe instead, wakes, and runs the Python handler.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """`with StopSignals() as stop: ...; stop.wait()`: SIGINT or SIGTERM ends the wait, even before it starts."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self._read_end = self._write_end = -1
        self._previous_wakeup = -1
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        self._read_end, self._write_end = os.pipe()
        os.set_blocking(self._write_end, False)  # set_wakeup_fd requires it: a handler must never block
        self._previous_wakeup = signal.set_wakeup_fd(self._write_end)
        self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopped.set()

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM (main thread only)."""
        while not self.stopped.is_set():
            os.read(self._read_end, 64)  # the Python handler has run by the time this read returns

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._read_end)
        os.close(self._write_end)
