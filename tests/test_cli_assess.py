"""`fluxmon assess` as a user runs it: a real process, reading files or a pipe."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.flux_bodies import SHA_NEW, SHA_OLD, kustomization, ready

FIXTURES = Path(__file__).parent / "fixtures" / "flux-examples.yaml"


def fluxmon(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fluxmon", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_lines_with_the_documented_keys() -> None:
    result = fluxmon("assess", str(FIXTURES))
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["name"] for r in records] == [
        "fleet",
        "team-a",
        "infrastructure",
        "apps",
        "cert-manager",
        "redis",
    ]
    assert set(records[0]) == {"kind", "namespace", "name", "phase", "reason", "message", "revision"}
    assert result.returncode == 1  # something failed
    assert result.stderr == ""


def test_kubectl_list_on_stdin_as_a_table() -> None:
    # What `kubectl get kustomizations -A -o yaml` prints: a List of items.
    listing = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "List",
            "metadata": {"resourceVersion": ""},
            "items": [
                kustomization(
                    "infrastructure", applied=f"main@sha1:{SHA_NEW}", conditions=ready(f"main@sha1:{SHA_NEW}")
                ),
                kustomization("apps", applied=f"main@sha1:{SHA_OLD}", conditions=ready(f"main@sha1:{SHA_OLD}")),
            ],
        }
    )
    result = fluxmon("assess", "--commit", SHA_NEW[:7], "--output", "table", "-", stdin=listing)
    assert result.returncode == 0, result.stderr
    header, infrastructure, apps = result.stdout.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]
    assert infrastructure.split()[:5] == [
        "flux-system",
        "kustomization/infrastructure",
        "main@sha1:7d1f6c2a",
        "False",
        "Ready",
    ]
    assert apps.split()[:5] == ["flux-system", "kustomization/apps", "main@sha1:0f9e8d7c", "False", "Pending"]


def test_non_flux_objects_are_skipped_with_a_note() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: apps}\n"
    result = fluxmon("assess", stdin=text)
    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr == "fluxmon: skipped v1 ConfigMap apps/settings: not a Flux object\n"


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (["assess"], "kind: [\n", "fluxmon: Cannot read input: <stdin>: document 1: line 2, column 1:"),
        (
            ["assess", "/nonexistent.yaml"],
            "",
            "fluxmon: Cannot read input: cannot read /nonexistent.yaml: No such file",
        ),
        (["assess", "--commit", "xyz"], "", "fluxmon: Cannot read input: --commit: not a commit sha"),
        (
            ["assess"],
            "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {}\n",
            "fluxmon: Cannot read input: <stdin>: document 1: Kustomization has no metadata.name",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], stdin: str, expected: str) -> None:
    result = fluxmon(*args, stdin=stdin)
    assert result.returncode == 2
    assert result.stderr.startswith(expected)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_help_lists_the_verbs() -> None:
    result = fluxmon("--help")
    assert result.returncode == 0
    assert "assess" in result.stdout


PATIENCE_SECONDS = 30
"""Only how long a test waits for something that should come at once, before it fails: never a measure."""


def test_each_document_is_judged_as_it_arrives_on_a_pipe() -> None:
    """The first document's note is on stderr while the rest of the input is still to be written: assess reads an
    object at a time, not the whole input first."""
    configmap = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: apps}\n---\n"
    later = yaml.safe_dump(
        kustomization("apps", applied=f"main@sha1:{SHA_NEW}", conditions=ready(f"main@sha1:{SHA_NEW}"))
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "fluxmon", "assess", "--commit", SHA_NEW],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin
    assert process.stdout
    assert process.stderr
    try:
        process.stdin.write(configmap.encode())
        process.stdin.flush()
        ready_to_read, _, _ = select.select([process.stderr], [], [], PATIENCE_SECONDS)
        assert ready_to_read, "no note on stderr before the rest of the input was written"
        assert process.stderr.readline() == b"fluxmon: skipped v1 ConfigMap apps/settings: not a Flux object\n"
        process.stdin.write(later.encode())
        process.stdin.close()
        assert process.wait(timeout=PATIENCE_SECONDS) == 0
        (record,) = [json.loads(line) for line in process.stdout.read().splitlines()]
        assert (record["name"], record["phase"]) == ("apps", "Ready")
        assert process.stderr.read() == b""
    finally:
        process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            pipe.close()


def test_notes_before_an_unreadable_item_of_a_list_are_kept() -> None:
    listing = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}},
                {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": None},
            ],
        }
    )
    result = fluxmon("assess", stdin=listing)
    assert result.returncode == 2
    assert result.stdout == ""  # no half answer
    assert result.stderr.splitlines() == [
        "fluxmon: skipped v1 ConfigMap settings: not a Flux object",
        "fluxmon: Cannot read input: <stdin>: document 1: items[1]: Kustomization has no metadata.name",
    ]


def test_every_file_is_opened_before_any_is_read(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n")
    result = fluxmon("assess", str(first), str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"fluxmon: Cannot read input: cannot read {tmp_path / 'missing.yaml'}: No such file or directory\n"
    )


def test_several_files_and_stdin_in_one_table(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(kustomization("infrastructure", conditions=ready(f"main@sha1:{SHA_NEW}"))))
    piped = json.dumps(kustomization("a-much-longer-name-than-the-first", conditions=ready(f"main@sha1:{SHA_OLD}")))
    result = fluxmon("assess", "-o", "table", str(first), "-", stdin=piped)
    assert result.returncode == 0, result.stderr
    header, infrastructure, longer = result.stdout.splitlines()
    column = header.index("MESSAGE")  # the column after the widest name: the rows of both inputs were measured
    assert infrastructure.index("Applied revision") == column == longer.index("Applied revision")


def test_a_closed_stdin_is_one_line_and_exit_2() -> None:
    """`fluxmon assess <&-` in a script: Python has no sys.stdin at all, which was an AttributeError (exit 1)."""
    result = subprocess.run(
        ["sh", "-c", 'exec "$0" -m fluxmon assess <&-', sys.executable],
        capture_output=True,
        text=True,
        timeout=PATIENCE_SECONDS,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "fluxmon: Cannot read input: cannot read <stdin>: it is closed; name a FILE to read\n"
