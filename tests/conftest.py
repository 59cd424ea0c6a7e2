"""Suite-wide guards: no test may leak a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves a thread running: a stop() that does not join is a bug."""
    before = set(threading.enumerate())
    yield
    leaked = [thread for thread in threading.enumerate() if thread not in before and thread.is_alive()]
    for thread in leaked:
        thread.join(timeout=2)
    still_alive = [thread.name for thread in leaked if thread.is_alive()]
    assert not still_alive, f"test leaked threads: {still_alive}"
