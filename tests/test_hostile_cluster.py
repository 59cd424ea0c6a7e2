"""A hostile cluster: malformed Flux objects, in every field fluxmon reads, never stop the judging of a good push.

Each bad object is reported once, as itself (a log line naming it and the field), and every other object and
session goes on. The bodies go through the API server's real list and watch; the pure half of the suite walks
every field of `READ_FIELDS` for every Flux kind with every kind of bad value, through parsing, discovery,
verdicts, sessions and every renderer.
"""

from __future__ import annotations

import copy
import http.server
import itertools
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.cluster import ClusterError, KindApi
from fluxmon.core.informer import KindState, KindStatus
from fluxmon.core.kube import Cluster
from fluxmon.core.objects import FLUX_KINDS, READ_FIELDS, ObjectRef, parse_flux_object
from fluxmon.core.overview import notification_for
from fluxmon.core.push import combine
from fluxmon.core.redact import redact_text
from fluxmon.core.render import json_lines, table
from fluxmon.core.session import SessionSpec, SessionState, evaluate
from fluxmon.core.store import push_record
from fluxmon.core.terminal import progress_lines, tree
from fluxmon.core.verdict import verdict
from fluxmon.sim.crds import FLUX_RESOURCES
from fluxmon.sim.kubeconfig import write_kubeconfig
from tests.fleet import SCALE_WEB, Fleet
from tests.flux_bodies import SHA_NEW, git_repository, kustomization, ready
from tests.test_sessions import following, spec_for

BAD_URL = "http://[oops/x.git"
CONTROL = "\x1b[2J\x1b]0;pwned\x07\x9b31m\r\x00\u202egood"
VALUES: dict[str, list[Any]] = {
    "wrong-type": [123, True, ["x", 1], {"k": {"deep": [1]}}, 1.5],
    "empty": ["", [], {}],
    "odd-url": [BAD_URL, "https://token@[::1/x", "://", "file://\x00", "git@:", "ssh://[::1"],
    "huge": ["a." * 50_000, "/" * 100_000, "x" * 100_000],
    "control": [CONTROL, "a\nb\tc\x85d\u2028e"],
}
"""Kinds of bad value, each tried in every field fluxmon reads."""

API_VERSIONS = {kind: f"{group}/{versions[0]}" for group, kind, _, versions, *_ in FLUX_RESOURCES}
SOURCE = "source.toolkit.fluxcd.io/v1"


def template(kind: str, name: str, *, namespace: str = "flux-system") -> dict[str, Any]:
    """A well-formed body of `kind` that fills every field fluxmon reads, following nothing of the test's push."""
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "lastHandledReconcileAt": "2026-10-02T09:14:03Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": "fine",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-10-02T09:14:03Z",
            }
        ],
        "artifact": {
            "revision": f"main@sha1:{SHA_NEW}",
            "lastUpdateTime": "2026-10-02T09:14:03Z",
            "metadata": {
                "org.opencontainers.image.source": "https://example.com/elsewhere",
                "org.opencontainers.image.revision": f"main@sha1:{SHA_NEW}",
            },
        },
        "lastAppliedRevision": f"main@sha1:{SHA_NEW}",
        "lastAttemptedRevision": f"main@sha1:{SHA_NEW}",
        "inventory": {"entries": [{"id": f"{namespace}_child_helm.toolkit.fluxcd.io_HelmRelease", "v": "v2"}]},
        "history": [{"chartVersion": "1.0.0+0123456789ab"}],
    }
    spec: dict[str, Any] = {
        "suspend": True,  # the simulated controllers leave it alone, so its malformed status stays as written
        "url": "https://example.com/elsewhere",
        "ref": {"branch": "main", "tag": "v1", "semver": "*", "name": "refs/heads/main", "commit": SHA_NEW},
        "sourceRef": {"kind": "GitRepository", "name": "elsewhere", "namespace": namespace},
        "chart": {"spec": {"chart": "x", "sourceRef": {"kind": "HelmRepository", "name": "elsewhere"}}},
        "chartRef": {"kind": "OCIRepository", "name": "elsewhere", "namespace": namespace},
        "path": "./elsewhere",
        "dependsOn": [{"name": "elsewhere", "namespace": namespace}],
    }
    return {
        "apiVersion": API_VERSIONS[kind],
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 1,
            "labels": {"kustomize.toolkit.fluxcd.io/name": "elsewhere"},
            "annotations": {"reconcile.fluxcd.io/requestedAt": "2026-10-02T09:14:03Z"},
        },
        "spec": spec,
        "status": status,
    }


def with_value(body: dict[str, Any], steps: tuple[str, ...], value: Any) -> dict[str, Any]:
    """`body` with `value` at `steps` (`[]` is the first item, `*` a key of the mapping), made where missing."""
    result = copy.deepcopy(body)
    here: Any = result
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        if step == "[]":
            if not isinstance(here, list) or not here:
                return result  # the container itself was made something else
            if last:
                here[0] = value
            here = here[0]
        else:
            key = next(iter(here), "k") if step == "*" and isinstance(here, dict) and here else step
            key = "k" if key == "*" else key
            if not isinstance(here, dict):
                return result
            if last:
                here[key] = value
            else:
                here = here.setdefault(key, [{}] if steps[index + 1] == "[]" else {})
    return result


def malformed(
    kind: str, value_class: str, *, prefix: str = "bad", every_value: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, body) for every field fluxmon reads, holding each bad value of `value_class` in turn (or one of
    them, taken in turn across the fields: a server holds a few hundred objects, not thousands of 100 kB ones)."""
    number = 0
    values = VALUES[value_class]
    for position, (steps, _) in enumerate(READ_FIELDS):
        for value in values if every_value else [values[position % len(values)]]:
            name = f"{prefix}-{kind.lower()}-{number}"
            number += 1
            yield ".".join(steps), with_value(template(kind, name), steps, value)


def has_raw_controls(text: str) -> bool:
    return re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", text) is not None


# --- the pure half: every field, every kind, every bad value --------------------------------------------------


def good_objects() -> list[dict[str, Any]]:
    """A source and a Kustomization that have deployed SHA_NEW: what the push's session must call succeeded."""
    revision = f"main@sha1:{SHA_NEW}"
    return [git_repository(revision=revision), kustomization("apps", applied=revision, conditions=ready(revision))]


def push_spec() -> SessionSpec:
    return SessionSpec(
        id="s", remote_url="git@github.com:acme/fleet.git", branch="main", commit=SHA_NEW, created_at=0.0
    )


SYNCED = {kind: KindState(kind=kind, status=KindStatus.SYNCED) for kind in FLUX_KINDS}


@pytest.mark.parametrize("value_class", sorted(VALUES))
@pytest.mark.parametrize("kind", sorted(FLUX_KINDS))
def test_every_malformed_field_is_read_as_itself_and_the_push_is_still_judged(kind: str, value_class: str) -> None:
    good = {obj.ref: obj for obj in map(parse_flux_object, good_objects())}
    for where, body in malformed(kind, value_class):
        bad = parse_flux_object(body)
        verdict(bad, SHA_NEW)
        objects = {**good, bad.ref: bad}
        snapshot = evaluate(push_spec(), objects, SYNCED, now=1.0)
        assert snapshot.state is SessionState.SUCCEEDED, f"{kind} {where}: {snapshot.message}"
        # The same object where the push's session follows it: judged, never raising, and shown safely.
        followed = copy.deepcopy(body)
        if isinstance(followed.get("spec"), dict) and followed["spec"].get("suspend") is True:
            followed["spec"]["suspend"] = False
        for key, value in (("url", "git@github.com:acme/fleet.git"), ("sourceRef", {"name": "fleet"})):
            if isinstance(followed.get("spec"), dict) and isinstance(followed["spec"].get(key), (str, dict)):
                followed["spec"][key] = value
        obj = parse_flux_object(followed)
        snapshot = evaluate(push_spec(), {**good, obj.ref: obj}, SYNCED, now=1.0)
        shown = [
            tree(snapshot, verbosity="verbose"),
            *progress_lines(None, snapshot),
            table([(obj, verdict(obj, SHA_NEW))]),
        ]
        for text in shown:
            assert not has_raw_controls(text), f"{kind} {where}: {text[:200]!r}"
        json_lines([(obj, verdict(obj, SHA_NEW))])
        push_record(combine([snapshot]))
        failed = replace(snapshot, state=SessionState.FAILED, failed=obj.ref)
        notice = notification_for(combine([failed]), sent=set(), now=datetime.now(), outcomes=("failed",))
        assert notice is not None  # its text is made safe where it is sent: tests/test_hostile_display.py


@pytest.mark.parametrize("url", VALUES["odd-url"])
def test_an_unparsable_url_is_a_problem_of_its_object_and_follows_nothing(url: str) -> None:
    body = git_repository("oops", url=url)
    obj = parse_flux_object(body)
    if obj.url == "":
        assert any(problem.startswith("spec.url: not a URL") for problem in obj.problems)
    spec = push_spec()
    snapshot = evaluate(spec, {obj.ref: obj}, SYNCED, now=1.0)
    assert snapshot.state is SessionState.NOT_DEPLOYED


def test_no_source_follows_is_said_only_once_every_source_kind_was_read() -> None:
    """A GitRepository list cut by a connection reset must not make a push "not deployed" (exit 4)."""
    states = {
        **SYNCED,
        "GitRepository": KindState(kind="GitRepository", status=KindStatus.UNREACHABLE, message="reset by peer"),
    }
    assert evaluate(push_spec(), {}, states, now=1.0).state is SessionState.WAITING_FOR_SOURCE
    assert evaluate(push_spec(), {}, SYNCED, now=1.0).state is SessionState.NOT_DEPLOYED


def test_a_url_that_does_not_parse_is_redacted_all_the_same() -> None:
    assert redact_text(f"failed to clone https://user:s3cret@[oops/x.git: {BAD_URL}") == (
        f"failed to clone https://***@[oops/x.git: {BAD_URL}"
    )


# --- the API half: the same bodies through a real API server's list and watch ------------------------------


def create(fleet: Fleet, body: dict[str, Any]) -> None:
    """Create `body` through the API, then write its status (create ignores status, as on a real server)."""
    client = fleet.cluster.admin
    resource = client.resource(body["apiVersion"], body["kind"])
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    client.create(resource, namespace, body)
    if "status" in body:
        client.patch_status(resource, namespace, name, body["status"])


def judged_despite(fleet: Fleet, bodies: list[dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    """Half the bodies exist before the monitor lists, half arrive by watch; then a good push must succeed."""
    early, late = bodies[::2], bodies[1::2]
    for body in early:
        create(fleet, body)
    with caplog.at_level(logging.WARNING, logger="fluxmon.informer"), following(fleet) as (engine, recorder):
        for body in late:
            create(fleet, body)
        sha = fleet.push(SCALE_WEB, "a good change among malformed objects")
        engine.add(spec_for(fleet, sha, session_id="good", reconcile=True))
        done = recorder.until("good", SessionState.SUCCEEDED)
    assert done.commit == sha
    assert "evaluating" not in caplog.text
    for body in bodies:
        ref = ObjectRef(kind=body["kind"], namespace="flux-system", name=body["metadata"]["name"])
        if parse_flux_object(body).problems and ref.kind in engine.kinds:
            # Said when seen, and not again at every status write (a controller may rewrite it: a new report).
            said = [r.getMessage() for r in caplog.records if f"{ref} is malformed" in r.getMessage()]
            assert said, f"{ref} was never reported"
            assert all(one != next_one for one, next_one in itertools.pairwise(said)), said


def test_a_gitrepository_with_an_unparsable_url_stops_nothing(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    """The case seen: `url: "http://[oops/x.git"` made every session fail and the tray stop judging."""
    body = git_repository("oops", url=BAD_URL)
    body["spec"]["suspend"] = True
    judged_despite(fleet, [body], caplog)
    assert "GitRepository/flux-system/oops is malformed, read as empty where it is: spec.url: not a URL" in (
        caplog.text
    )


@pytest.mark.parametrize("cluster", ["sim"], indirect=True)
@pytest.mark.parametrize("value_class", sorted(VALUES))
def test_malformed_objects_of_every_kind_through_the_api(
    fleet: Fleet, value_class: str, caplog: pytest.LogCaptureFixture
) -> None:
    bodies = []
    for kind in FLUX_KINDS:
        for where, body in malformed(kind, value_class, prefix="api", every_value=False):
            if where.startswith("metadata"):
                continue  # the API server itself refuses malformed metadata
            bodies.append(body)
    judged_despite(fleet, bodies, caplog)


# --- a server that answers nonsense: the adapter turns it into a cluster error, never a crash of the loop -------


class NonsenseServer:
    """Answers a list with something that is not a list, and a watch with a line that is not an event."""

    def __init__(self, *, list_body: bytes, watch_line: bytes) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = outer.watch_line if "watch=true" in self.path else outer.list_body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                """Quiet: the test reads what the client makes of the answer."""

        self.list_body, self.watch_line = list_body, watch_line
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="nonsense-server", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


GIT_REPOSITORIES = KindApi(
    kind="GitRepository", group="source.toolkit.fluxcd.io", version="v1", plural="gitrepositories"
)


@pytest.mark.parametrize("list_body", [b"[1, 2]", b'{"metadata": 5, "items": []}', b'{"metadata": {}, "items": 7}'])
def test_a_list_that_is_not_a_list_is_a_cluster_error(tmp_path: Path, list_body: bytes) -> None:
    with NonsenseServer(list_body=list_body, watch_line=b"") as url:
        cluster = Cluster.connect(kubeconfig=str(write_kubeconfig(tmp_path / "kubeconfig", server=url)))
        try:
            with pytest.raises(ClusterError, match="the answer is not a Kubernetes list"):
                cluster.list_kind(GIT_REPOSITORIES)
        finally:
            cluster.close()


@pytest.mark.parametrize("line", [b"not json\n", b"[1]\n", b'{"type": "ADDED", "object": 5}\n', b"\xff\xfe\n"])
def test_a_watch_line_that_is_not_an_event_ends_the_watch_as_a_cluster_error(tmp_path: Path, line: bytes) -> None:
    with NonsenseServer(list_body=b"{}", watch_line=line) as url:
        cluster = Cluster.connect(kubeconfig=str(write_kubeconfig(tmp_path / "kubeconfig", server=url)))
        try:
            with pytest.raises(ClusterError, match="sent something that is not a watch event"):
                list(cluster.watch(GIT_REPOSITORIES, "1"))
        finally:
            cluster.close()
