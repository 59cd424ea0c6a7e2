"""A generated history of a few thousand pushes, for the tests and the benchmark of `fluxmon history` and `report`.

Every record is made the way the engine makes it: SessionSnapshots per cluster, combined into a PushSnapshot
(core.push), written by core.store's push_record. So the records have the real shape, and a change to that shape
reaches these tests. Seeded: the same arguments give the same history.

The fleet: two repositories, each on staging and production. Each push deploys a source, two Kustomizations
(infrastructure, then apps, which depends on it) and a HelmRelease under apps; each object takes its own typical
time (log-normal, so that p95 is well above p50). Outcomes: mostly deployed, some failed with Flux's own reasons,
a few timed out, superseded or not followed, in proportions that drift over the days (a bad week, then better).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxmon.core.objects import ObjectRef
from fluxmon.core.push import combine
from fluxmon.core.session import ResourceStatus, Role, SessionSnapshot, SessionState
from fluxmon.core.store import HISTORY_FILE, OWNER, push_record
from fluxmon.core.verdict import Phase

REMOTES = ("https://git.example.com/acme/fleet.git", "git@git.example.com:acme/platform.git")
CONTEXTS = ("staging", "production")
SOURCE = ObjectRef(kind="GitRepository", namespace="flux-system", name="flux-system")
INFRA = ObjectRef(kind="Kustomization", namespace="flux-system", name="infrastructure")
APPS = ObjectRef(kind="Kustomization", namespace="flux-system", name="apps")
PODINFO = ObjectRef(kind="HelmRelease", namespace="apps", name="podinfo")
CHAIN = ((SOURCE, 8.0), (INFRA, 12.0), (APPS, 20.0), (PODINFO, 35.0))
"""The objects in the order Flux gets to them, each with its typical seconds after the one before."""
FAILURES = (
    (APPS, "BuildFailed", "kustomize build failed: accumulating resources: open apps/web.yaml: no such file"),
    (APPS, "HealthCheckFailed", "health check failed after 2m0s: timeout waiting for: [Deployment/apps/web status]"),
    (PODINFO, "UpgradeFailed", "Helm upgrade failed: context deadline exceeded"),
    (INFRA, "ReconciliationFailed", "Namespace/monitoring dry-run failed: namespaces is forbidden"),
)
PRODUCTION_FACTOR = 1.6
"""Production is slower: more replicas, stricter health checks."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Generated:
    records: tuple[dict[str, Any], ...]
    start: float
    end: float


def generate_history(count: int, *, days: int = 30, end: float | None = None, seed: int = 7) -> Generated:
    """`count` pushes spread over the `days` before `end` (now), oldest first, as history records."""
    rng = random.Random(seed)  # noqa: S311 - made-up data, repeatable by its seed
    end = time.time() if end is None else end
    start = end - days * 86400
    times = sorted(rng.uniform(start, end - 3600) for _ in range(count))
    records = []
    for number, started in enumerate(times):
        bad_week = (started - start) / 86400 < days / 4
        records.append(_push(rng, number, started, bad_week=bad_week))
    return Generated(records=tuple(records), start=start, end=end)


def write_history(directory: Path, records: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> Path:
    """The records as the store's history file (one line each), in a private folder as the store makes it."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / HISTORY_FILE
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    path.chmod(0o600)
    return path


def _push(rng: random.Random, number: int, started: float, *, bad_week: bool) -> dict[str, Any]:
    remote = REMOTES[number % len(REMOTES)]
    commit = f"{rng.getrandbits(160):040x}"
    roll = rng.random()
    failed_odds = 0.16 if bad_week else 0.06
    if roll < failed_odds:
        fate = SessionState.FAILED
    elif roll < failed_odds + 0.04:
        fate = SessionState.TIMED_OUT
    elif roll < failed_odds + 0.06:
        fate = SessionState.SUPERSEDED
    elif roll < failed_odds + 0.07:
        fate = SessionState.NOT_DEPLOYED
    else:
        fate = SessionState.SUCCEEDED
    failing_on = rng.choice(CONTEXTS)
    failure = rng.choice(FAILURES)
    sessions = [
        _session(rng, number, remote, commit, started, context, _fate(fate, context, failing_on), failure)
        for context in CONTEXTS
    ]
    record = push_record(combine(sessions))
    record["follower"] = OWNER
    record["recorded_at"] = record["ended_at"] or started
    return record


def _fate(fate: SessionState, context: str, failing_on: str) -> SessionState:
    """A cluster's outcome: a failure or a timeout is one cluster's (the other deploys); the rest are the push's."""
    if context != failing_on and fate in (SessionState.FAILED, SessionState.TIMED_OUT):
        return SessionState.SUCCEEDED
    return fate


def _session(
    rng: random.Random,
    number: int,
    remote: str,
    commit: str,
    started: float,
    context: str,
    state: SessionState,
    failure: tuple[ObjectRef, str, str],
) -> SessionSnapshot:
    factor = PRODUCTION_FACTOR if context == "production" else 1.0
    resources: list[ResourceStatus] = []
    clock = started
    failed: ObjectRef | None = None
    for ref, typical in CHAIN if state is not SessionState.NOT_DEPLOYED else ():
        clock += rng.lognormvariate(0, 0.45) * typical * factor
        phase = Phase.READY
        reason, message = "ReconciliationSucceeded", f"Applied revision: main@sha1:{commit}"
        if failed is not None or (state is SessionState.TIMED_OUT and ref is PODINFO):
            phase, reason, message = Phase.PENDING if failed else Phase.PROGRESSING, "Progressing", "in progress"
        elif state is SessionState.FAILED and ref == failure[0]:
            phase, reason, message = Phase.FAILED, failure[1], failure[2]
            failed = ref
        elif state is SessionState.SUPERSEDED:
            phase, reason, message = Phase.PENDING, "Progressing", "superseded"
        ready = phase is Phase.READY
        resources.append(
            ResourceStatus(
                ref=ref,
                role=_role(ref),
                phase=phase,
                reason=reason,
                message=message,
                revision=f"main@sha1:{commit}",
                since=clock if ready else started,
                seconds_in_phase={"Progressing": clock - started, **({"Ready": 1.0} if ready else {})},
                parent=None if ref is SOURCE else SOURCE if ref.kind == "Kustomization" else APPS,
            )
        )
    ended = clock if state is not SessionState.TIMED_OUT else started + 300.0
    if state is SessionState.NOT_DEPLOYED:
        ended = started + 1.0
    return SessionSnapshot(
        id=f"generated-{number}",
        state=state,
        message=_message(state, commit, failed),
        commit=commit,
        branch="main",
        remote=remote,
        subject=f"change {number}",
        repo="",
        started_at=started,
        updated_at=ended,
        ended_at=ended,
        resources=tuple(resources),
        failed=failed,
        context=context,
    )


def _role(ref: ObjectRef) -> Role:
    return {"GitRepository": Role.SOURCE, "Kustomization": Role.KUSTOMIZATION}.get(ref.kind, Role.HELMRELEASE)


def _message(state: SessionState, commit: str, failed: ObjectRef | None) -> str:
    if state is SessionState.SUCCEEDED:
        return f"{commit[:7]} deployed: {len(CHAIN)} resources ready"
    if failed is not None:
        return f"{failed} failed"
    return state.value
