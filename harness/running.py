"""A command running in the background whose output a test can wait for, line by line, with timeouts."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

LINE_TIMEOUT_SECONDS = 30.0


class Running:
    """`Popen` with both pipes read by named threads into queues; `finish()` waits for the exit and the threads."""

    def __init__(self, args: Sequence[str], *, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(list(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._pump, args=("stdout", self.process.stdout), name="test-pump-stdout"),
            threading.Thread(target=self._pump, args=("stderr", self.process.stderr), name="test-pump-stderr"),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self._lines.put((name, line.rstrip("\n")))

    def expect(self, predicate: Callable[[str, str], bool], what: str) -> str:
        """Wait until a line (stream name, text) satisfies `predicate`; returns its text."""
        deadline = time.monotonic() + LINE_TIMEOUT_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            try:
                name, line = self._lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                raise AssertionError(f"no line {what} within {LINE_TIMEOUT_SECONDS:.0f}s; got {self.stderr}") from None
            (self.stdout if name == "stdout" else self.stderr).append(line)
            if predicate(name, line):
                return line

    def collected(self) -> list[str]:
        """Every stdout line printed so far (without waiting)."""
        while not self._lines.empty():
            name, line = self._lines.get_nowait()
            (self.stdout if name == "stdout" else self.stderr).append(line)
        return self.stdout

    def expect_stderr(self, text: str) -> str:
        return self.expect(lambda name, line: name == "stderr" and text in line, f"containing {text!r}")

    def expect_snapshot(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        line = self.expect(lambda name, line: name == "stdout" and predicate(json.loads(line)), what)
        record: dict[str, Any] = json.loads(line)
        return record

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit; drain what is left; returns the exit status."""
        code = self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(10)
        while not self._lines.empty():
            name, line = self._lines.get_nowait()
            (self.stdout if name == "stdout" else self.stderr).append(line)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()
