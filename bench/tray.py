"""Benchmark of the tray app on the test suite's headless desktop (Xvfb, trayer, dunst, a private session bus).

Figures, not assertions:
- start-up: from starting `fluxmon tray` to its icon's pixels on the panel (median of several starts);
- idle, with 10 pushes in the history and the default notifier (D-Bus, dunst answering): CPU over
  BENCH_IDLE_SECONDS (default 60) as a share of one core, the wakeups of all the tray's threads (context switches),
  and the RSS then. First against a real kube-apiserver (harness/kubeapiserver.py: it sends a watch's bookmark
  about once a minute, as a cluster does; issue 16's target), then against the simulator (a bookmark on every quiet
  watch each second), following one cluster, then CLUSTERS at once (`--all-contexts`). Each is measured once a
  watch per kind is open on every cluster;
- latency from a session snapshot posted to the UI queue to the icon and tooltip applied on pystray's GLib loop
  (in this process, so both ends are on one clock; target p95 under 100 ms).
Run: .venv/bin/python -m bench.tray [--save]   (about four minutes; --save writes bench/results/tray.json)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.results import Table, save
from fluxmon.core.config import DEFAULT_MONITOR_TYPES, Config
from fluxmon.core.engine import Engine
from fluxmon.core.push import combine
from fluxmon.core.session import SessionState
from fluxmon.core.store import SessionStore
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import KubeconfigContext, write_contexts, write_kubeconfig
from harness.desktop import Desktop, wait_until
from harness.kubeapiserver import RealApiServer, binaries, real_apiserver
from harness.snapshots import failed_snapshot, snapshot

STARTS = 5
LATENCY_SAMPLES = 200
HISTORY_SESSIONS = 10
DEPLOYED_GREEN = (40, 160, 70)
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))
CLUSTERS = 5
SETTLE_TIMEOUT_SECONDS = 30.0
IDLE_CPU_TARGET_PERCENT = 0.2
RSS_TARGET_MIB = 100.0


def icon_docked(desktop: Desktop) -> bool:
    image = desktop.grab(desktop.geometry(desktop.trayer_window)).convert("RGB")
    colours: Any = image.getcolors(1 << 16) or []
    red, green, blue = DEPLOYED_GREEN
    matching: int = sum(n for n, (r, g, b) in colours if abs(r - red) + abs(g - green) + abs(b - blue) < 30)
    return matching > 40


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wakeups(pid: int) -> int:
    """Context switches of all the process's threads so far: each is a thread that slept and woke (or was
    preempted), so an idle process's count is its wakeups."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
    return total


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True, kw_only=True)
class Idle:
    """One idle run of the tray."""

    tier: str  # "kube-apiserver" or "simulator"
    clusters: int
    watches: int
    cpu_seconds: float
    elapsed_seconds: float
    wakeups: int
    rss_mib: float

    @property
    def percent(self) -> float:
        return 100 * self.cpu_seconds / self.elapsed_seconds

    def line(self) -> str:
        return (
            f"{self.tier}, {self.clusters} cluster(s): idle CPU over {self.elapsed_seconds:.0f} s: "
            f"{self.cpu_seconds:.2f} s of CPU = {self.percent:.3f} % of one core, {self.wakeups} wakeups "
            f"({60 * self.wakeups / self.elapsed_seconds:.0f} a minute); RSS with {HISTORY_SESSIONS} pushes in "
            f"history {self.rss_mib:.1f} MiB ({self.watches} watches open)"
        )


def measure_idle(
    desktop: Desktop,
    env: dict[str, str],
    kubeconfig: Path,
    *,
    tier: str,
    clusters: int,
    watches_open: Callable[[], int],
) -> Idle:
    """Idle CPU, wakeups and RSS of a tray following every context of `kubeconfig` (`clusters` of them), once
    `watches_open()` counts a watch per kind on each."""
    command = [sys.executable, "-m", "fluxmon", "tray", "--kubeconfig", str(kubeconfig), "--all-contexts"]
    tray = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: icon_docked(desktop), "the icon")
        wanted = clusters * len(DEFAULT_MONITOR_TYPES)
        wait_until(lambda: watches_open() >= wanted, f"{wanted} watches open", SETTLE_TIMEOUT_SECONDS)
        # Counted now: at the end of the idle minute every watch may be just ending (the 60 s watch timeout) and
        # opening again, and a count taken then says 0.
        watches = watches_open()
        cpu_before, wakeups_before, idle_from = cpu_seconds(tray.pid), wakeups(tray.pid), time.perf_counter()
        time.sleep(IDLE_SECONDS)  # the quantity measured is idleness itself
        idle = Idle(
            tier=tier,
            clusters=clusters,
            watches=watches,
            cpu_seconds=cpu_seconds(tray.pid) - cpu_before,
            elapsed_seconds=time.perf_counter() - idle_from,
            wakeups=wakeups(tray.pid) - wakeups_before,
            rss_mib=rss_mib(tray.pid),
        )
    finally:
        tray.terminate()
        tray.wait(30)
    wait_until(lambda: not icon_docked(desktop), "the icon to go")
    print(idle.line())
    return idle


def registered_watchers(real: RealApiServer) -> int:
    """The watches open on Flux kinds, as the kube-apiserver counts them (its `apiserver_registered_watchers`)."""
    context = ssl.create_default_context(cadata=real.ca_data.decode())
    request = urllib.request.Request(  # noqa: S310 - the https URL of the server this benchmark started
        f"{real.url}/metrics", headers={"Authorization": f"Bearer {real.admin_token}"}
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("apiserver_registered_watchers{") and "fluxcd.io" in line
    )


def measure_real_tier(desktop: Desktop, env: dict[str, str], root: Path) -> Idle | None:
    """Idle against a real kube-apiserver with the Flux CRDs (no controllers: nothing changes, as on a quiet
    cluster); None, said, where it has not been built."""
    if binaries() is None:
        print("kube-apiserver is not built here (scripts/kube-apiserver): no figures against the real tier")
        return None
    with real_apiserver(root / "kube") as real:
        install_crds(KubeClient(real.url, token=real.admin_token, ca_data=real.ca_data))
        ca = root / "kube-ca.crt"
        ca.write_bytes(real.ca_data)
        kubeconfig = write_kubeconfig(
            root / "kubeconfig-real", server=real.url, token=real.admin_token, ca_file=ca, context="kube-apiserver"
        )
        return measure_idle(
            desktop, env, kubeconfig, tier="kube-apiserver", clusters=1, watches_open=lambda: registered_watchers(real)
        )


def measure_process(desktop: Desktop, env: dict[str, str], kubeconfig: Path) -> list[float]:
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
    return startups


def measure_latency(desktop: Desktop, root: Path, kubeconfig: Path) -> list[float]:
    os.environ.update(desktop.env, FLUXMON_NOTIFIER="none", PYSTRAY_BACKEND="gtk")
    from gi.repository import GLib

    from fluxmon.tray import app as tray_app
    from fluxmon.tray.app import Message
    from fluxmon.tray.icon import TrayIcon
    from fluxmon.tray.menu import Action
    from fluxmon.tray.notify import Delivered, Notifier, make_notifier

    latencies: list[float] = []
    posted: list[float] = []
    """When the snapshot in flight was posted (one at a time: the next waits until this one is applied)."""
    applied = threading.Event()

    started = threading.Event()

    class MeasuredIcon(TrayIcon):
        def start(self, **kwargs: Any) -> None:
            super().start(**kwargs)
            started.set()

        def show(self, **kwargs: Any) -> None:
            super().show(**kwargs)

            def done() -> bool:
                # pystray queued its icon and tooltip changes before this one: they are applied now.
                if posted:
                    latencies.append(time.perf_counter() - posted.pop())
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
            applied.clear()
            posted.append(time.perf_counter())
            app.post(Message.SNAPSHOT, update)
            applied.wait(5)
            posted.clear()  # not applied in time: not counted
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
    return latencies


def history(state: Path) -> None:
    """HISTORY_SESSIONS settled pushes (one failed), already told: the menu lists them, nothing is notified."""
    store = SessionStore(state / "fluxmon")
    for number in range(HISTORY_SESSIONS):
        made = failed_snapshot if number == 0 else snapshot
        store.finish(combine([replace(made(), id=f"history-{number}", started_at=1000.0 + number)]))


def table(startups: list[float], idles: list[Idle], latencies: list[float]) -> Table:
    rows = [
        (
            f"`fluxmon tray` started → its icon's pixels on the panel, median of {len(startups)}",
            f"{statistics.median(startups):.2f} s ({min(startups):.2f} s to {max(startups):.2f} s)",
            "",
        )
    ]
    for idle in idles:
        where = f"{idle.tier}, {idle.clusters} cluster{'s' if idle.clusters > 1 else ''} ({idle.watches} watches)"
        real = idle.tier == "kube-apiserver"
        rows.append(
            (
                f"idle CPU over {idle.elapsed_seconds:.0f} s, {where}",
                f"{idle.cpu_seconds:.2f} s of CPU, {idle.percent:.3f} % of one core; "
                f"{60 * idle.wakeups / idle.elapsed_seconds:.0f} wakeups a minute",
                f"at most {IDLE_CPU_TARGET_PERCENT} % of one core" if real else "",
            )
        )
        rows.append(
            (
                f"RSS, {where}, {HISTORY_SESSIONS} pushes in the history",
                f"{idle.rss_mib:.1f} MiB",
                f"under {RSS_TARGET_MIB:.0f} MiB" if real else "",
            )
        )
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    rows.append(
        (
            f"push snapshot posted → icon and tooltip applied on pystray's loop, {len(latencies)} snapshots",
            f"p50 {1000 * statistics.median(latencies):.1f} ms, p95 {1000 * p95:.1f} ms "
            f"(max {1000 * latencies[-1]:.0f} ms)",
            "p95 under 100 ms",
        )
    )
    return Table(
        name="tray",
        columns=("what", "measured", "target"),
        rows=tuple(rows),
        notes=(
            "Idle: the default notifier (D-Bus, dunst answering), GTK backend on Xvfb and trayer; a wakeup is a "
            "context switch of any of the tray's threads.",
        ),
        data={
            "startup_seconds": startups,
            "idle": [
                {
                    "tier": idle.tier,
                    "clusters": idle.clusters,
                    "watches": idle.watches,
                    "cpu_seconds": idle.cpu_seconds,
                    "elapsed_seconds": idle.elapsed_seconds,
                    "cpu_percent": idle.percent,
                    "wakeups": idle.wakeups,
                    "rss_mib": idle.rss_mib,
                }
                for idle in idles
            ],
            "latency_ms": {"p50": 1000 * statistics.median(latencies), "p95": 1000 * p95, "max": 1000 * latencies[-1]},
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tray", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--save", action="store_true", help="also write the figures to bench/results/tray.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fluxmon-bench-tray-") as scratch:
        root = Path(scratch)
        desktop = Desktop(root / "desktop")
        servers = [SimApiServer() for _ in range(CLUSTERS)]
        for each in servers:
            each.start()
        desktop.start()
        try:
            for each in servers:
                install_crds(KubeClient(each.url))
            kubeconfig = write_kubeconfig(root / "kubeconfig", server=servers[0].url)
            contexts = [KubeconfigContext(name=f"cluster-{n}", server=each.url) for n, each in enumerate(servers, 1)]
            one = write_contexts(root / "kubeconfig-one", contexts[:1])
            several = write_contexts(root / "kubeconfig-several", contexts)
            state = root / "state"
            history(state)
            env = {
                **{k: v for k, v in os.environ.items() if k != "FLUXMON_NOTIFIER"},  # the default: D-Bus
                **desktop.env,
                "XDG_STATE_HOME": str(state),
                "XDG_CONFIG_HOME": str(root / "config"),
                "XDG_RUNTIME_DIR": str(root),
                "FLUXMON_SPOOL_DIR": str(root / "spool"),
                "PYSTRAY_BACKEND": "gtk",  # trayer hosts XEmbed icons
            }
            with desktop.notification_daemon():
                startups = measure_process(desktop, {**env, "FLUXMON_NOTIFIER": "none"}, kubeconfig)
                idles = [
                    idle
                    for idle in [
                        measure_real_tier(desktop, env, root),
                        measure_idle(
                            desktop,
                            env,
                            one,
                            tier="simulator",
                            clusters=1,
                            watches_open=lambda: servers[0].open_watches,
                        ),
                        measure_idle(
                            desktop,
                            env,
                            several,
                            tier="simulator",
                            clusters=CLUSTERS,
                            watches_open=lambda: sum(server.open_watches for server in servers),
                        ),
                    ]
                    if idle is not None
                ]
            latencies = measure_latency(desktop, root, kubeconfig)
        finally:
            desktop.stop()
            for each in servers:
                each.stop()
    if args.save:
        print(f"saved {save(table(startups, idles, latencies))}")


if __name__ == "__main__":
    main()
