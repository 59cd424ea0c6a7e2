"""A real HTTP server on loopback that receives webhooks: it keeps each request (headers and exact body), answers
with the statuses it is given in turn, and can hang (accept, read, never answer) until released."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self, statuses: Sequence[int] = (200,), *, hang: bool = False) -> None:
        self.statuses = list(statuses)
        self.hang = hang
        self.requests: list[Received] = []
        self.release = threading.Event()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    index = len(receiver.requests) - 1
                    receiver._changed.notify_all()
                if receiver.hang:
                    receiver.release.wait(timeout=60)
                    return  # closes without an answer
                status = receiver.statuses[min(index, len(receiver.statuses) - 1)]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T0001/B0001/s3cr3tpath"
        self._thread = threading.Thread(target=self.server.serve_forever, name="test-receiver")

    def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        """Block until `count` requests have arrived (or fail after `timeout`)."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.requests) >= count, timeout), self.requests
            return list(self.requests)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def receiving(statuses: Sequence[int] = (200,), *, hang: bool = False) -> Iterator[Receiver]:
    receiver = Receiver(statuses, hang=hang)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
