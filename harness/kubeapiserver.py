"""A real kube-apiserver (with etcd) on loopback, for the tests' real-API tier and the benchmarks (bench.tray).

The binaries come from `scripts/kube-apiserver` (built from Debian's kubernetes source and cached). Auth is by
static tokens: `admin` is in system:masters; `limited` has whatever RBAC a test grants it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ADMIN_TOKEN = "admin-token-for-tests"
LIMITED_TOKEN = "limited-token-for-tests"
START_TIMEOUT_SECONDS = 60.0
READY_POLL_SECONDS = 0.2


def binaries() -> Path | None:
    """The folder with kube-apiserver and etcd, or None when they have not been built on this machine."""
    cache = os.environ.get("FLUXMON_KUBE_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fluxmon" / "kube-v1.20.2"
    )
    folder = Path(cache) / "bin"
    return folder if (folder / "kube-apiserver").exists() and (folder / "etcd").exists() else None


@dataclass(frozen=True)
class RealApiServer:
    url: str
    ca_data: bytes
    admin_token: str = ADMIN_TOKEN
    limited_token: str = LIMITED_TOKEN


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def real_apiserver(workdir: Path) -> Iterator[RealApiServer]:
    """Start etcd and kube-apiserver, wait until ready, and stop both (by pid) afterwards."""
    folder = binaries()
    if folder is None:
        raise RuntimeError("kube-apiserver is not built: run scripts/kube-apiserver")
    workdir.mkdir(parents=True, exist_ok=True)
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    (workdir / "tokens.csv").write_text(
        f'{ADMIN_TOKEN},admin,admin,"system:masters"\n{LIMITED_TOKEN},limited,limited\n', encoding="utf-8"
    )
    subprocess.run(
        ["openssl", "genrsa", "-out", str(workdir / "sa.key"), "2048"], check=True, capture_output=True, timeout=60
    )
    logs = (workdir / "etcd.log").open("wb")
    etcd = subprocess.Popen(
        [
            str(folder / "etcd"),
            "--data-dir",
            str(workdir / "etcd"),
            "--listen-client-urls",
            f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
        ],
        stdout=logs,
        stderr=subprocess.STDOUT,
    )
    api_logs = (workdir / "kube-apiserver.log").open("wb")
    apiserver = subprocess.Popen(
        [
            str(folder / "kube-apiserver"),
            "--etcd-servers",
            f"http://127.0.0.1:{etcd_port}",
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
            "--secure-port",
            str(api_port),
            "--cert-dir",
            str(workdir / "certs"),
            "--token-auth-file",
            str(workdir / "tokens.csv"),
            "--authorization-mode",
            "RBAC",
            "--service-account-key-file",
            str(workdir / "sa.key"),
            "--service-account-signing-key-file",
            str(workdir / "sa.key"),
            "--service-account-issuer",
            "https://kubernetes.default.svc",
            "--service-cluster-ip-range",
            "10.96.0.0/24",
            "--disable-admission-plugins",
            "ServiceAccount",
            "--enable-priority-and-fairness=false",
        ],
        stdout=api_logs,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"https://127.0.0.1:{api_port}"
        ca_data = _wait_ready(url, workdir / "certs" / "apiserver.crt", apiserver, workdir)
        yield RealApiServer(url=url, ca_data=ca_data)
    finally:
        for process in (apiserver, etcd):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        logs.close()
        api_logs.close()


def _wait_ready(url: str, cert: Path, process: subprocess.Popen[bytes], workdir: Path) -> bytes:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (workdir / "kube-apiserver.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"kube-apiserver exited with {process.returncode}:\n{tail}")
        if cert.exists():
            context = ssl.create_default_context(cadata=cert.read_text())
            request = urllib.request.Request(  # noqa: S310 - an https URL we built ourselves
                f"{url}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return cert.read_bytes()
            except OSError:
                pass
        # Not ready yet: wait on the process itself, so that a crash is seen at once, then ask /readyz again.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=READY_POLL_SECONDS)
    raise RuntimeError(f"kube-apiserver was not ready within {START_TIMEOUT_SECONDS:.0f}s")
