"""What the simulated source-, kustomize- and helm-controllers share: how a reconciler writes status and events.

The real controllers share these rules through fluxcd/pkg (runtime/conditions, runtime/patch), and the
simulator must keep them, because the monitor reads exactly these fields:
- Conditions are set one type at a time on the object's current list, each with its own `observedGeneration`;
  a condition keeps its `lastTransitionTime` while its status, reason and message hold; Stalled, Reconciling and
  Ready come first (fluxcd/pkg@e2cfd1a2 runtime/conditions/setter.go: `Set`, `lexicographicLess`, `MarkStalled` deletes
  Reconciling and `MarkReconciling` deletes Stalled).
- `status.observedGeneration` moves only on success or on a terminal stall. Each controller says when.
- Events go out before the status they explain, with the revision in a `<group>/revision` annotation.

A reconciler runs level-triggered passes (the one worker thread of FluxControllers calls `reconcile_all()`):
each object either starts a step, finishes one whose time has come, or waits. A step records what it was asked
to handle when it started (generation, reconcile request, revision), so a request that arrives mid-step is
handled by the next step, not marked done by this one.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluxmon.sim.client import ApiStatusError, KubeClient, Resource
from fluxmon.sim.informer import Informer

log = logging.getLogger("fluxmon.sim")

SIMULATE_ANNOTATION = "sim.fluxmon.dev/simulate"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
MAX_EVENT_MESSAGE = 1024
CONDITION_WEIGHTS = {"Stalled": 0, "Reconciling": 1, "Ready": 2}
COMPONENTS = {
    "source.toolkit.fluxcd.io": "source-controller",
    "kustomize.toolkit.fluxcd.io": "kustomize-controller",
    "helm.toolkit.fluxcd.io": "helm-controller",
}

ObjKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True, kw_only=True, slots=True)
class SimTimings:
    """How long each simulated step takes. Defaults look alive in the demo; TEST_TIMINGS make tests fast."""

    fetch_seconds: float = 1.0
    build_seconds: float = 1.5
    health_seconds: float = 1.0
    health_timeout_seconds: float = 8.0
    install_seconds: float = 2.0
    retry_seconds: float = 10.0
    max_interval_seconds: float | None = None
    """Caps every spec.interval (a GitRepository's 1m poll becomes this), or None to honour them."""


@dataclass
class Step:
    """A reconcile under way: its stage, when due, the revision, what it handles, what earlier stages found."""

    stage: str
    due: float
    revision: str
    started: float
    handles: tuple[Any, ...]
    """What this reconcile was started for: once it ends, that counts as handled (see Reconciler.settle)."""
    data: dict[str, Any] = field(default_factory=dict)


class Failed(Exception):
    """A reconcile failed with a Flux reason and message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Conditions:
    """An object's conditions, edited as fluxcd/pkg's conditions package edits them, then written whole."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self._generation = generation(obj)
        self._items = [dict(c) for c in (obj.get("status") or {}).get("conditions") or []]

    def get(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self._items if c.get("type") == type_), None)

    def status(self, type_: str) -> str:
        found = self.get(type_)
        return str(found.get("status", "")) if found else ""

    def is_true(self, type_: str) -> bool:
        return self.status(type_) == "True"

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        previous = self.get(type_)
        same_state = previous is not None and (
            previous.get("status"),
            previous.get("reason"),
            previous.get("message"),
        ) == (status, reason, message)
        since = previous["lastTransitionTime"] if previous is not None and same_state else now_text()
        self.delete(type_)
        self._items.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": self._generation,
                "lastTransitionTime": since,
            }
        )

    def delete(self, type_: str) -> None:
        self._items = [c for c in self._items if c.get("type") != type_]

    def mark_reconciling(self, reason: str, message: str) -> None:
        self.delete("Stalled")
        self.set("Reconciling", "True", reason, message)

    def mark_stalled(self, reason: str, message: str) -> None:
        self.delete("Reconciling")
        self.set("Stalled", "True", reason, message)

    def progressive(self, message: str, *, drift: bool) -> None:
        """fluxcd/pkg runtime/reconcile.ProgressiveStatus: Reconciling, and Ready=Unknown on drift or no verdict."""
        self.mark_reconciling("Progressing", message)
        ready = self.status("Ready")
        if drift or ready in ("", "Unknown"):
            self.set("Ready", "Unknown", "Progressing", message)

    def retrying(self) -> None:
        """A failed attempt that will be retried: Reconciling keeps its message, its reason is ProgressingWithRetry."""
        reconciling = self.get("Reconciling")
        if reconciling is not None and reconciling.get("status") == "True":
            reconciling["reason"] = "ProgressingWithRetry"

    def as_list(self) -> list[dict[str, Any]]:
        def order(c: dict[str, Any]) -> tuple[int, int, str]:
            weight = CONDITION_WEIGHTS.get(str(c.get("type")), 3)
            return (weight, -int(c.get("observedGeneration") or 0), str(c.get("type")))

        return sorted(self._items, key=order)


StepStarter = Callable[[ObjKey, dict[str, Any], dict[str, Any], float], None]
"""Starts a step for (key, object, spec, now)."""


class Reconciler:
    """One simulated controller: the kinds it reconciles, and the bookkeeping and writes every controller shares."""

    kinds: tuple[tuple[str, str], ...] = ()
    """(apiVersion, kind) it reconciles; the runner calls `reconcile_<kind>` for each object of each kind."""
    watches: tuple[tuple[str, str], ...] = ()
    """Other kinds it reads (from the shared informers) but does not reconcile."""

    def __init__(self, client: KubeClient, *, timings: SimTimings, informers: dict[str, Informer]) -> None:
        self.client = client
        self.timings = timings
        self.informers = informers
        self._resources: dict[str, Resource] = {}
        self._steps: dict[ObjKey, Step] = {}
        self._handled: dict[ObjKey, tuple[Any, ...]] = {}
        self._next: dict[ObjKey, float] = {}
        self._broken: dict[ObjKey, int] = {}
        """The resourceVersion of each object whose reconcile raised, last said in the log."""
        self._written: dict[ObjKey, int] = {}
        """The resourceVersion of each object's last status write: it is not reconciled again until the informer
        has it, as helm-controller waits for its cache after a patch (helmrelease_controller.go,
        `waitForHistoryCacheSync`); otherwise a step would start from a status it has already replaced."""

    def finished_step(self, key: ObjKey, obj: dict[str, Any], start: StepStarter) -> tuple[Step, float] | None:
        """The object's step whose time has come, taken off the schedule, with the time now; else None.

        With no step running, `start` is asked to start one. A suspended object is left alone, as every Flux
        controller leaves it.
        """
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            return None
        now = time.monotonic()
        step = self._steps.get(key)
        if step is None:
            start(key, obj, spec, now)
            return None
        if now < step.due:
            return None
        del self._steps[key]
        return step, now

    def resource(self, kind: str) -> Resource:
        found = self._resources.get(kind)
        if found is None:
            informer = self.informers.get(kind)
            found = informer.resource if informer is not None else self.client.resource("v1", kind)
            self._resources[kind] = found
        return found

    def next_due(self, now: float) -> float | None:
        """When this controller next has timed work (a step finishing, an interval or retry coming round)."""
        times = [step.due for step in self._steps.values()] + [at for at in self._next.values() if at > now]
        return min(times, default=None)

    def reconcile_all(self) -> None:
        for _, kind in self.kinds:
            reconcile = getattr(self, f"reconcile_{kind.lower()}")
            for obj in self.informers[kind].snapshot():
                key = (kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                if _version(obj) < self._written.get(key, 0):
                    continue  # the informer has not seen our last write yet; its event will wake us
                try:
                    reconcile(key, obj)
                except ApiStatusError as error:
                    # The object changed or went away under us; the next pass sees the new state.
                    log.info("%s/%s/%s: %s", *key, error)
                    self._steps.pop(key, None)
                except Exception:
                    # Said once per version of the object, not at every pass: the simulated API server does no
                    # schema validation, so an object a real one would refuse (`path: 12`) stays until it changes.
                    if self._broken.get(key) != _version(obj):
                        self._broken[key] = _version(obj)
                        log.exception("reconciling %s/%s/%s failed", *key)
                    self._steps.pop(key, None)

    # --- when to reconcile -----------------------------------------------------------------------------------

    def due(self, key: ObjKey, desired: tuple[Any, ...], now: float, restored: tuple[Any, ...]) -> bool:
        """Whether `key` needs a reconcile: what it should reflect changed, or its interval (or retry) came.

        `restored` is what the object's status says was last handled, used after a (re)start of the controller.
        """
        handled = self._handled.get(key)
        if handled is None:
            if restored != desired:
                return True
            self._handled[key] = handled = restored
        return handled != desired or now >= self._next.get(key, 0.0)

    def settle(self, key: ObjKey, handled: tuple[Any, ...], next_at: float) -> None:
        self._handled[key] = handled
        self._next[key] = next_at

    def interval(self, spec: dict[str, Any]) -> float:
        seconds = parse_go_duration(str(spec.get("interval") or "10m"))
        cap = self.timings.max_interval_seconds
        return min(seconds, cap) if cap is not None else seconds

    # --- writes ----------------------------------------------------------------------------------------------

    def write_status(self, key: ObjKey, conditions: Conditions | None = None, **fields: Any) -> dict[str, Any] | None:
        """Merge-patch status fields (None deletes one) and, when given, the whole list of conditions."""
        status = dict(fields)
        if conditions is not None:
            status["conditions"] = conditions.as_list()
        kind, namespace, name = key
        written = self.client.patch_status(self.resource(kind), namespace, name, status)
        self._written[key] = _version(written)
        return written

    def event(self, key: ObjKey, obj: dict[str, Any], type_: str, reason: str, message: str, *, revision: str) -> None:
        """A core/v1 Event on the object, as the Flux controllers record them (the revision in an annotation)."""
        kind, namespace, name = key
        group = obj["apiVersion"].partition("/")[0]
        component = COMPONENTS.get(group, "flux")
        metadata: dict[str, Any] = {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace}
        if revision:
            metadata["annotations"] = {f"{group}/revision": revision}
        try:
            self.client.create(
                self.resource("Event"),
                namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": metadata,
                    "involvedObject": {
                        "kind": kind,
                        "namespace": namespace,
                        "name": name,
                        "apiVersion": obj["apiVersion"],
                        "uid": obj["metadata"].get("uid", ""),
                        "resourceVersion": obj["metadata"].get("resourceVersion", ""),
                    },
                    "reason": reason,
                    "message": message[:MAX_EVENT_MESSAGE],
                    "type": type_,
                    "source": {"component": component},
                    "reportingComponent": component,
                    "reportingInstance": f"{component}-sim",
                    "firstTimestamp": now_text(),
                    "lastTimestamp": now_text(),
                    "count": 1,
                },
            )
        except ApiStatusError as error:
            log.warning("could not record event on %s/%s/%s: %s", *key, error)


# --- reading objects -------------------------------------------------------------------------------------------


def _version(obj: dict[str, Any] | None) -> int:
    """A resourceVersion as a number: both API servers here count them up (etcd's revision, or the simulator's)."""
    text = str(((obj or {}).get("metadata") or {}).get("resourceVersion", ""))
    return int(text) if text.isdigit() else 0


def generation(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("generation", 1))


def observed_generation(obj: dict[str, Any]) -> int:
    """status.observedGeneration, -1 (the Flux CRDs' default) when the controller has not finished a reconcile."""
    value = (obj.get("status") or {}).get("observedGeneration")
    return int(value) if isinstance(value, int) else -1


def requested_at(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("annotations") or {}).get(REQUESTED_AT, ""))


def simulated(obj: dict[str, Any]) -> str:
    """The simulator's own annotation counts as a spec change, so that pushing it takes effect at once."""
    return str((obj["metadata"].get("annotations") or {}).get(SIMULATE_ANNOTATION, ""))


def is_ready(obj: dict[str, Any] | None) -> bool:
    if obj is None:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def ready_message(obj: dict[str, Any]) -> str:
    ready = Conditions(obj).get("Ready") or {}
    return str(ready.get("message", ""))


def artifact_revision(obj: dict[str, Any] | None) -> str:
    return str((((obj or {}).get("status") or {}).get("artifact") or {}).get("revision", ""))


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration (`1m0s`, `10m`, `1h30m`, `500ms`)."""
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total or 600.0


def duration_text(text: str) -> str:
    """A Go duration as Go prints it (`5m0s`, `1h0m0s`)."""
    seconds = int(parse_go_duration(text))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
