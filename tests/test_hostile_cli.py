"""The CLI as a hostile world meets it, in real subprocesses: broken kubeconfigs, rejected credentials, closed
ports, servers that never answer, malformed flags and input. Each gives one line and the right exit status
(2: usage, config or cluster; 1 means only "deployment failed"), in time, never a traceback. And git's text
reaches the terminal without its control characters, while `--json` keeps it exact."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import re
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from fluxmon.core.terminal import screen_rows
from fluxmon.sim.cluster import install_crds
from fluxmon.sim.kubeconfig import write_kubeconfig
from tests.clusters import Cluster
from tests.fleet import SCALE_WEB, Fleet
from tests.test_monitor import wait_outside_a_repo

COMMIT = "7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170"
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
PATIENCE_SECONDS = 60
"""A subprocess that has not ended by then has waited for a timeout it should not have needed."""


def fluxmon(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxmon", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PATIENCE_SECONDS,
        check=False,
        cwd=cwd,
    )


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("fluxmon: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


KUBECONFIGS = {
    "not-yaml": ("not: [yaml", "is not a valid kubeconfig: line 1, column 11: expected ',' or ']'"),
    "a-list": ("- 1\n- 2\n", "is not a valid kubeconfig"),
    "binary": ("\udcff\udcfe", "is not a valid kubeconfig"),
    "empty": ("", "is not a valid kubeconfig"),
    "server-a-number": (
        "apiVersion: v1\ncurrent-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "clusters:\n- name: c\n  cluster: {server: 12}\nusers:\n- name: u\n  user: {}\n",
        "context 'x': its cluster or user entry cannot be loaded",
    ),
    "server-bad-ipv6": (
        "apiVersion: v1\ncurrent-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "clusters:\n- name: c\n  cluster: {server: 'http://[oops'}\nusers:\n- name: u\n  user: {}\n",
        "Invalid IPv6 URL",
    ),
    "context-without-cluster": (
        "apiVersion: v1\ncurrent-context: x\ncontexts:\n- name: x\n",
        "is not a valid kubeconfig",
    ),
}


@pytest.mark.parametrize("name", sorted(KUBECONFIGS))
def test_a_malformed_kubeconfig_is_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    text, expected = KUBECONFIGS[name]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text, encoding="utf-8", errors="surrogateescape")
    line = one_line_exit_2(wait_outside_a_repo(kubeconfig, tmp_path, timeout="5m"))
    assert line.startswith("fluxmon: kubeconfig problem: ")
    assert expected in line


def test_a_kubeconfig_that_is_a_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    line = one_line_exit_2(wait_outside_a_repo(tmp_path, tmp_path, timeout="5m"))
    assert "is not a valid kubeconfig" in line


def kubeconfig_with_token(cluster: Cluster, tmp_path: Path, token: str) -> Path:
    ca = tmp_path / "ca.crt"
    if cluster.ca_data:
        ca.write_bytes(cluster.ca_data)
    return write_kubeconfig(
        tmp_path / "kubeconfig-token", server=cluster.url, token=token, ca_file=ca if cluster.ca_data else None
    )


@pytest.fixture
def flux_cluster(cluster: Cluster) -> Cluster:
    install_crds(cluster.admin)
    if cluster.sim is not None:
        cluster.sim.tokens = {"limited-token": "limited"}
        cluster.sim.allow_anonymous = False
        cluster.sim.authorizer = lambda user, verb, group, resource, namespace: False
        cluster.limited_token = "limited-token"
    return cluster


def test_401_ends_at_once_with_exit_2(flux_cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = kubeconfig_with_token(flux_cluster, tmp_path, "expired-token")
    line = one_line_exit_2(wait_outside_a_repo(kubeconfig, tmp_path, timeout="5m"))
    assert line.startswith("fluxmon: Not logged in to the cluster: ")
    assert "(401)" in line


def test_403_on_every_kind_ends_at_once_naming_the_verbs(flux_cluster: Cluster, tmp_path: Path) -> None:
    kubeconfig = kubeconfig_with_token(flux_cluster, tmp_path, flux_cluster.limited_token)
    line = one_line_exit_2(wait_outside_a_repo(kubeconfig, tmp_path, timeout="5m"))
    assert line.startswith("fluxmon: Missing permissions: ")
    assert "fluxmon needs get, list and watch on" in line
    assert "kustomizations" in line


def test_a_closed_port_gives_up_after_a_few_tries_not_at_the_timeout(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=f"http://127.0.0.1:{port}")
    line = one_line_exit_2(wait_outside_a_repo(kubeconfig, tmp_path, timeout="5m"))
    assert line.startswith("fluxmon: Cluster unreachable: cannot reach the API server")
    assert line.endswith("(tried 3 times)")


class SilentServer:
    """Accepts every connection and never answers a byte: a hung API server, or a proxy in front of a dead one."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self.accepted = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the blocked accept(); close() alone would not, and the thread could then accept on
        # whatever socket reuses the descriptor next.
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        for connection in self._held:
            connection.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)
            self.accepted.set()


def test_a_server_that_never_answers_cannot_stretch_the_timeout(tmp_path: Path) -> None:
    timeout = 2.0
    with SilentServer() as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server=f"http://127.0.0.1:{server.port}")
        started = time.monotonic()
        result = wait_outside_a_repo(kubeconfig, tmp_path, timeout=f"{timeout:g}s")
        took = time.monotonic() - started
        assert server.accepted.is_set()
    line = one_line_exit_2(result)
    assert "accepted the connection but did not answer within 2s" in line
    # Generous, for a loaded machine: the process starts (about a second) and stops within 1 s of its deadline.
    # Before, the stuck discovery held it for the deadline plus 10 s plus a 5 s join per watched kind.
    assert took < timeout + 8, f"took {took:.1f}s"


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("http://[oops/fleet.git", "not a valid URL"),
        ("https://host/fleet\x1b[2J.git", "contains control characters"),
        ("  ", "empty"),
    ],
)
def test_a_malformed_remote_is_one_line_and_exit_2(tmp_path: Path, remote: str, expected: str) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server="http://127.0.0.1:1")
    line = one_line_exit_2(wait_outside_a_repo(kubeconfig, tmp_path, "--remote", remote, timeout="5m"))
    assert line.startswith("fluxmon: Cannot read input: --remote")
    assert expected in line
    assert not RAW_CONTROLS.search(line)


@pytest.mark.parametrize("commit", [COMMIT + "a", COMMIT * 2, "7d1f6c"])
def test_a_commit_of_the_wrong_length_is_a_usage_error(tmp_path: Path, commit: str) -> None:
    line = one_line_exit_2(fluxmon("assess", "--commit", commit, cwd=tmp_path))
    assert "--commit: not a commit sha" in line
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", server="http://127.0.0.1:1")
    line = one_line_exit_2(wait_outside_a_repo(kubeconfig, tmp_path, "--commit", commit, timeout="5m"))
    assert "--commit: not a commit sha" in line


def test_input_that_is_not_utf8_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fluxmon", "assess"],
        input=b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: \xff}\n",
        capture_output=True,
        timeout=PATIENCE_SECONDS,
        check=False,
        cwd=tmp_path,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert stderr.startswith("fluxmon: Cannot read input: cannot read <stdin>: 'utf-8' codec can't decode byte 0xff")
    assert "Traceback" not in stderr


def test_a_null_metadata_is_reported_with_its_document_number(tmp_path: Path) -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\n"
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: null\n"
    )
    result = fluxmon("assess", stdin=text, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fluxmon: skipped v1 ConfigMap first: not a Flux object",
        "fluxmon: Cannot read input: <stdin>: document 2: Kustomization has no metadata.name",
    ]


def test_assess_names_a_malformed_field_and_shows_no_raw_control_characters(tmp_path: Path) -> None:
    text = (
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\n"
        'metadata: {name: "web\\e[2J\\a", namespace: flux-system}\n'
        "spec: {url: 'http://[oops/x.git', ref: [main]}\n"
        "status: {conditions: [{type: Ready, status: 'False', reason: Failed, message: \"bad\\e]0;x\\a\\x9b\"}]}\n"
    )
    result = fluxmon("assess", "--output", "table", stdin=text, cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr
    assert "spec.url: not a URL ('http://[oops/x.git'); read as empty" in result.stderr
    assert "spec.ref: expected an object, got a list; read as empty" in result.stderr
    assert not RAW_CONTROLS.search(result.stdout + result.stderr)
    as_json = fluxmon("assess", stdin=text, cwd=tmp_path)
    assert not RAW_CONTROLS.search(as_json.stdout)
    assert json.loads(as_json.stdout)["message"] == "bad\x1b]0;x\x07\x9b"  # exact, and escaped on the wire


HOSTILE_SUBJECT = "Scale web \x1b[2J\x1b]0;owned\x07 \x9b31m and \x7fmore"


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_wait_shows_git_text_safely_and_json_keeps_it_exact(fleet: Fleet) -> None:
    sha = fleet.commit_and_push(SCALE_WEB, HOSTILE_SUBJECT)
    result = subprocess.run(
        [
            sys.executable, "-m", "fluxmon", "wait", "--repo", str(fleet.work), "--kubeconfig",
            str(fleet.cluster.kubeconfig), "--timeout", "30s", "--reconcile", "--json",
        ],
        env=fleet.env, capture_output=True, text=True, timeout=PATIENCE_SECONDS, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not RAW_CONTROLS.search(result.stderr)
    assert f"► following {sha[:7]} (Scale web" in result.stderr
    assert not RAW_CONTROLS.search(result.stdout)
    assert json.loads(result.stdout.splitlines()[-1])["subject"] == HOSTILE_SUBJECT


COLUMNS = 40


def run_in_a_terminal(args: list[str], *, env: dict[str, str], columns: int) -> str:
    """Run `args` with its stdout on a pseudo-terminal `columns` wide; everything it wrote, as text."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(args, stdout=follower, stderr=subprocess.DEVNULL, env={**env, "COLUMNS": ""})
    os.close(follower)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError as exc:  # EIO: the terminal's other end was closed, the process is done with it
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        process.wait(PATIENCE_SECONDS)
    return output.decode("utf-8").replace("\r\n", "\n")


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
def test_watch_moves_up_over_wrapped_rows_when_it_redraws(fleet: Fleet) -> None:
    fleet.commit_and_push(SCALE_WEB, "a subject long enough to wrap on a narrow terminal, " * 3)
    args = [
        sys.executable, "-m", "fluxmon", "watch", "--repo", str(fleet.work), "--kubeconfig",
        str(fleet.cluster.kubeconfig), "--timeout", "30s", "--reconcile",
    ]  # fmt: skip
    env = {key: value for key, value in fleet.env.items() if key not in ("NO_COLOR", "COLUMNS", "LINES")}
    output = run_in_a_terminal(args, env=env, columns=COLUMNS)
    frames = re.split(r"\x1b\[(\d+)F\x1b\[J", output)
    # frames: tree, rows to move up, tree, rows to move up, ..., the final tree
    assert len(frames) >= 3, output
    for drawn, moved_up in zip(frames[0::2], frames[1::2], strict=False):
        assert int(moved_up) == screen_rows(drawn, COLUMNS), drawn
    assert int(frames[1]) > frames[0].count("\n")  # the header wrapped: counting newlines would not do
