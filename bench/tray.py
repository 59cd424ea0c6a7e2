"""Benchmark of the tray app on the test suite's headless desktop (Xvfb, trayer, dunst, a private session bus).

Figures, not assertions:
- start-up: from starting `fluxmon tray` to its icon's pixels on the panel (median of several starts);
- idle CPU over BENCH_IDLE_SECONDS (default 60) with 10 pushes in the history, and the RSS then, following one
  cluster, then CLUSTERS simulated clusters at once (`--all-contexts`), measured once a watch per kind is open on
  each;
- latency from a session snapshot posted to the UI queue to the icon and tooltip applied on pystray's GLib loop
  (in this process, so both ends are on one clock; target p95 under 100 ms).
Run: .venv/bin/python -m bench.tray
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from fluxmon.core.config import DEFAULT_MONITOR_TYPES, Config
from fluxmon.core.engine import Engine
from fluxmon.core.overview import overview
from fluxmon.core.push import combine
from fluxmon.core.session import SessionState
from fluxmon.core.store import SessionStore
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import KubeconfigContext, write_contexts, write_kubeconfig
from harness.desktop import Desktop, wait_until
from harness.snapshots import failed_snapshot, snapshot

STARTS = 5
LATENCY_SAMPLES = 200
HISTORY_SESSIONS = 10
DEPLOYED_GREEN = (40, 160, 70)
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
CLUSTERS = 5


def icon_docked(desktop: Desktop) -> bool:
    image = desktop.grab(desktop.geometry(desktop.trayer_window)).convert("RGB")
    colours: Any = image.getcolors(1 << 16) or []
    red, green, blue = DEPLOYED_GREEN
    matching: int = sum(n for n, (r, g, b) in colours if abs(r - red) + abs(g - green) + abs(b - blue) < 30)
    return matching > 40


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_idle(desktop: Desktop, env: dict[str, str], kubeconfig: Path, *, servers: list[SimApiServer]) -> None:
    """Idle CPU and RSS of a tray following every context of `kubeconfig`, one per server."""
    clusters = len(servers)
    command = [sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(kubeconfig), "--all-contexts"]
    tray = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: icon_docked(desktop), "the icon")
        for server in servers:  # every cluster followed, and settled: a watch per kind open on each
            if not server.wait_for_watches(len(DEFAULT_MONITOR_TYPES), 30):
                raise RuntimeError(f"the tray did not watch every kind on {server.url}")
        before, idle_from = cpu_seconds(tray.pid), time.perf_counter()
        time.sleep(IDLE_SECONDS)  # the quantity measured is idleness itself
        used = cpu_seconds(tray.pid) - before
        elapsed = time.perf_counter() - idle_from
        print(
            f"{clusters} cluster(s): idle CPU over {elapsed:.0f} s: {used:.2f} s of CPU = "
            f"{100 * used / elapsed:.2f} % of one core; RSS with {HISTORY_SESSIONS} pushes in history "
            f"{rss_mib(tray.pid):.1f} MiB "
            f"({sum(server.open_watches for server in servers)} watches open)"
        )
    finally:
        tray.terminate()
        tray.wait(30)
    wait_until(lambda: not icon_docked(desktop), "the icon to go")


def measure_process(desktop: Desktop, env: dict[str, str], kubeconfig: Path) -> None:
    command = [sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(kubeconfig)]
    startups = []
    for _ in range(STARTS):
        begun = time.perf_counter()
        tray = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: icon_docked(desktop), "the icon")
            startups.append(time.perf_counter() - begun)
        finally:
            tray.terminate()
            tray.wait(30)
        wait_until(lambda: not icon_docked(desktop), "the icon to go")
    print(
        f"start-up to icon visible: median {statistics.median(startups):.2f} s, "
        f"min {min(startups):.2f} s, max {max(startups):.2f} s ({STARTS} starts)"
    )


def measure_latency(desktop: Desktop, root: Path, kubeconfig: Path) -> None:
    os.environ.update(desktop.env, FLUXMON_NOTIFIER="none", PYSTRAY_BACKEND="gtk")
    from gi.repository import GLib

    from fluxmon.tray import app as tray_app
    from fluxmon.tray.app import Message
    from fluxmon.tray.icon import TrayIcon
    from fluxmon.tray.menu import Action
    from fluxmon.tray.notify import Delivered, Notifier, make_notifier

    latencies: list[float] = []
    posted: dict[str, float] = {}
    applied = threading.Event()

    started = threading.Event()

    class MeasuredIcon(TrayIcon):
        def start(self, **kwargs: Any) -> None:
            super().start(**kwargs)
            started.set()

        def show(self, **kwargs: Any) -> None:
            super().show(**kwargs)
            token = kwargs["tooltip"]

            def done() -> bool:
                # pystray queued its icon and tooltip changes before this one: they are applied now.
                started = posted.pop(token, None)
                if started is not None:
                    latencies.append(time.perf_counter() - started)
                    applied.set()
                return False

            GLib.idle_add(done)

    def icon(*, on_action: Callable[[Action], None]) -> TrayIcon:
        return MeasuredIcon(backend="gtk", on_action=on_action, icon_dir=root / "icons-latency")

    def notifier(*, on_details: Callable[[str], None], on_delivered: Delivered) -> Notifier:
        return make_notifier("none", on_details=on_details, on_delivered=on_delivered)

    engine = Engine(kubeconfig=str(kubeconfig), state_dir=root / "state-latency", spool_dir=root / "spool-latency")
    app = tray_app.TrayApp(engine, config=Config(), icon=icon, notifier=notifier)

    def inject() -> None:
        if not started.wait(30):
            raise RuntimeError("the tray did not start")
        for sample in range(LATENCY_SAMPLES):
            state = SessionState.RECONCILING if sample % 2 else SessionState.SUCCEEDED
            update = combine([replace(snapshot(state), id=f"latency-{sample}", started_at=float(sample))])
            tooltip = overview([*app.snapshots.values(), update], paused_until=None).tooltip
            applied.clear()
            posted[tooltip] = time.perf_counter()
            app.post(Message.SNAPSHOT, update)
            applied.wait(5)
        app.quit()

    injector = threading.Thread(target=inject, name="bench-injector")
    injector.start()
    app.run()
    injector.join()
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"snapshot -> icon and tooltip applied: p50 {1000 * statistics.median(latencies):.1f} ms, "
        f"p95 {1000 * p95:.1f} ms, max {1000 * latencies[-1]:.1f} ms ({len(latencies)} snapshots)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="fluxmon-bench-tray-") as scratch:
        root = Path(scratch)
        desktop = Desktop(root / "desktop")
        servers = [SimApiServer() for _ in range(CLUSTERS)]
        server = servers[0]
        for each in servers:
            each.start()
        desktop.start()
        try:
            for each in servers:
                install_crds(KubeClient(each.url))
            kubeconfig = write_kubeconfig(root / "kubeconfig", server=server.url)
            contexts = [KubeconfigContext(name=f"cluster-{n}", server=each.url) for n, each in enumerate(servers, 1)]
            one = write_contexts(root / "kubeconfig-one", contexts[:1])
            several = write_contexts(root / "kubeconfig-several", contexts)
            state = root / "state"
            store = SessionStore(state / "fluxmon")
            for number in range(HISTORY_SESSIONS):
                made = failed_snapshot if number == 0 else snapshot
                store.finish(combine([replace(made(), id=f"history-{number}", started_at=1000.0 + number)]))
            env = {
                **os.environ,
                **desktop.env,
                "XDG_STATE_HOME": str(state),
                "XDG_RUNTIME_DIR": str(root),
                "FLUXMON_SPOOL_DIR": str(root / "spool"),
                "FLUXMON_NOTIFIER": "none",
                "PYSTRAY_BACKEND": "gtk",  # trayer hosts XEmbed icons
            }
            measure_process(desktop, env, kubeconfig)
            measure_idle(desktop, env, one, servers=servers[:1])
            measure_idle(desktop, env, several, servers=servers)
            measure_latency(desktop, root, kubeconfig)
        finally:
            desktop.stop()
            for each in servers:
                each.stop()


if __name__ == "__main__":
    main()
