"""StopSignals: a SIGTERM ends the wait even when the kernel delivers it to another thread than the main one."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from fluxmon.signals import StopSignals


@pytest.mark.timeout(30)
def test_a_signal_sent_from_other_threads_ends_the_wait_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    for _ in range(20):  # any of the threads alive may be the one the kernel picks
        with StopSignals() as stop:
            sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM), name="test-sender")
            sender.start()
            stop.wait()
            sender.join()
        assert stop.stopped.is_set()
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_before_the_wait_is_not_lost() -> None:
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        stop.wait()  # returns at once: the handler already ran
    assert stop.stopped.is_set()
