"""`fluxmon feed`: the CCTray feed of the pushes fluxmon followed (core/feed.py), served or printed once.

It reads the state folder only (the history and the pushes being followed), so it runs beside the tray, or on
its own to show the history that `wait`, `watch` and the tray left.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fluxmon.core import paths
from fluxmon.core.config import load_config
from fluxmon.core.feed import DEFAULT_FEED_LISTEN, FeedServer, feed_token, store_feed
from fluxmon.core.store import SessionStore
from fluxmon.exits import EXIT_OK
from fluxmon.signals import StopSignals


def run_feed(args: argparse.Namespace) -> int:
    """`fluxmon feed --print`, or serve `/cctray.xml` on `--listen` (config `feed_listen`, else loopback:8765)
    until Ctrl-C."""
    logging.basicConfig(level=os.environ.get("FLUXMON_LOG", "WARNING").upper(), format="fluxmon: %(message)s")
    config = load_config()
    for warning in config.warnings:
        print(f"fluxmon: {warning}", file=sys.stderr)
    store = SessionStore(paths.state_dir())
    if args.print:
        sys.stdout.buffer.write(store_feed(store))
        sys.stdout.flush()
        return EXIT_OK
    token = feed_token(
        token_env=args.token_env or config.feed_token_env,
        token_file="" if args.token_env else config.feed_token_file,
        environ=os.environ,
    )
    server = FeedServer(
        args.listen or config.feed_listen or DEFAULT_FEED_LISTEN, lambda: store_feed(store), token=token
    )
    with StopSignals() as stop:
        server.start()
        print(f"fluxmon feed: serving {server.url} until Ctrl-C", flush=True)
        try:
            stop.wait()
        finally:
            server.stop()
    return EXIT_OK
