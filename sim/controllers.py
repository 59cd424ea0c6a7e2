"""Simulated Flux controllers (source, kustomize, helm): clients of an API server, as the real ones are.

They watch Flux objects through informers and write status through the /status subresource, with the condition
types, reasons and message templates of the real controllers, so that what the monitor reads is shaped exactly as
in production. They run unchanged against the simulated API server or a real kube-apiserver.

Simulation conventions (documented for the sample repo):
- A GitRepository follows a local bare repository (`file:///path/fleet.git` or a plain path).
- A Kustomization builds the YAML under its spec.path at the source's commit: broken YAML gives BuildFailed, a
  missing path ArtifactFailed, an unknown kind ReconciliationFailed. With `wait: true` (or healthChecks), a
  Deployment annotated `sim.fluxmon.dev/simulate: unhealthy` never becomes ready: HealthCheckFailed after the
  health timeout.
- A HelmRelease annotated `sim.fluxmon.dev/simulate: fail` fails to install or upgrade; after
  spec.install/upgrade.remediation.retries retries it is Stalled with RetriesExceeded.

One worker thread runs level-triggered passes: after any change it looks at every object and advances those
that need it. Each step takes the configured time (SimTimings), tracked per object, so one thread can pace many
objects at demo speed or at test speed.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml

from fluxmon.sim import gitsource
from fluxmon.sim.client import ApiStatusError, KubeClient, Resource
from fluxmon.sim.informer import Informer

log = logging.getLogger("fluxmon.sim")

SIMULATE_ANNOTATION = "sim.fluxmon.dev/simulate"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
KUSTOMIZE_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
KUSTOMIZE_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
MAX_EVENT_MESSAGE = 1024
PASS_CEILING_SECONDS = 0.5
"""The worker wakes at least this often, so that timed steps finish on time even when nothing changes."""


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


DEMO_TIMINGS = SimTimings()
TEST_TIMINGS = SimTimings(
    fetch_seconds=0.01,
    build_seconds=0.01,
    health_seconds=0.01,
    health_timeout_seconds=0.3,
    install_seconds=0.01,
    retry_seconds=0.5,
    max_interval_seconds=3600,
)

ObjKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass
class _Step:
    """A reconcile under way: which stage, when it is due, at which revision, and what earlier stages found."""

    stage: str
    due: float
    revision: str
    started: float
    data: dict[str, Any] = field(default_factory=dict)


class _Failed(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class FluxControllers:
    """source-, kustomize- and helm-controller in one: `start()` and `stop()`, nothing in the constructor."""

    def __init__(self, client: KubeClient, *, timings: SimTimings = DEMO_TIMINGS) -> None:
        self.client = client
        self.timings = timings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._informers: dict[str, Informer] = {}
        self._resources: dict[str, Resource] = {}
        self._steps: dict[ObjKey, _Step] = {}
        self._handled: dict[ObjKey, tuple[Any, ...]] = {}
        self._next: dict[ObjKey, float] = {}
        self._waiting: dict[ObjKey, str] = {}

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for api_version, kind in (
            ("source.toolkit.fluxcd.io/v1", "GitRepository"),
            ("source.toolkit.fluxcd.io/v1", "HelmRepository"),
            ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
            ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
        ):
            resource = self.client.resource(api_version, kind)
            self._resources[kind] = resource
            self._informers[kind] = Informer(self.client, resource, on_change=self._wake.set)
        self._resources["Event"] = self.client.resource("v1", "Event")
        for informer in self._informers.values():
            informer.start(self._stop)
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name="sim-flux-controllers", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self.client.close_watches()
        for informer in self._informers.values():
            informer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(informer.synced.wait(max(0.0, deadline - time.monotonic())) for informer in self._informers.values())

    # --- the loop ------------------------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            due = min((step.due for step in self._steps.values()), default=now + PASS_CEILING_SECONDS)
            due = min([due, *(at for at in self._next.values() if at > now)], default=due)
            self._wake.wait(timeout=min(max(due - now, 0.005), PASS_CEILING_SECONDS))
            self._wake.clear()
            if stop.is_set():
                return
            self._pass()

    def _pass(self) -> None:
        for kind, reconcile in (
            ("GitRepository", self._reconcile_git_repository),
            ("HelmRepository", self._reconcile_helm_repository),
            ("Kustomization", self._reconcile_kustomization),
            ("HelmRelease", self._reconcile_helm_release),
        ):
            for obj in self._informers[kind].snapshot():
                key = (kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                try:
                    reconcile(key, obj)
                except ApiStatusError as error:
                    # The object changed or went away under us; the next pass sees the new state.
                    log.info("%s/%s/%s: %s", *key, error)
                    self._steps.pop(key, None)
                except Exception:
                    log.exception("reconciling %s/%s/%s failed", *key)
                    self._steps.pop(key, None)

    # --- source-controller ---------------------------------------------------------------------------------------

    def _reconcile_git_repository(self, key: ObjKey, obj: dict[str, Any]) -> None:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if spec.get("suspend"):
            return
        now = time.monotonic()
        step = self._steps.get(key)
        if step is None:
            desired = (_generation(obj), _requested_at(obj))
            if not self._due(key, desired, now, status):
                return
            try:
                repo = gitsource.repo_path(spec.get("url", ""))
                ref, pointer = _git_ref(spec.get("ref") or {})
                sha = gitsource.resolve(repo, ref)
            except gitsource.GitSourceError as error:
                message = f"failed to checkout and determine revision: {error}"
                self._event(key, obj, "Warning", "GitOperationFailed", message, revision="")
                self._write_status(
                    key,
                    obj,
                    {
                        "observedGeneration": _generation(obj),
                        "lastHandledReconcileAt": _requested_at(obj) or None,
                        "conditions": [
                            _condition(obj, "Ready", "False", "GitOperationFailed", message),
                            _condition(obj, "FetchFailed", "True", "GitOperationFailed", message),
                        ],
                    },
                )
                self._settle(key, desired, now + self.timings.retry_seconds)
                return
            revision = f"{pointer}@sha1:{sha}"
            if (status.get("artifact") or {}).get("revision") == revision and _is_ready(obj):
                self._write_status(key, obj, {"lastHandledReconcileAt": _requested_at(obj) or None})
                self._settle(key, desired, now + self._interval(spec))
                return
            message = f"building artifact: new upstream revision '{revision}'"
            self._progressing(key, obj, message)
            self._steps[key] = _Step(
                "fetch", now + self.timings.fetch_seconds, revision, now, {"repo": repo, "sha": sha}
            )
            return
        if now < step.due:
            return
        del self._steps[key]
        revision = step.revision
        stored = f"stored artifact for revision '{revision}'"
        digest = hashlib.sha256(revision.encode()).hexdigest()
        self._write_status(
            key,
            obj,
            {
                "observedGeneration": _generation(obj),
                "lastHandledReconcileAt": _requested_at(obj) or None,
                "artifact": {
                    "revision": revision,
                    "digest": f"sha256:{digest}",
                    "lastUpdateTime": _now(),
                    "path": f"gitrepository/{key[1]}/{key[2]}/{step.data['sha']}.tar.gz",
                    "url": f"http://source-controller.flux-system.svc.cluster.local./gitrepository/{key[1]}/{key[2]}/"
                    f"{step.data['sha']}.tar.gz",
                    "size": 1024,
                },
                "conditions": [
                    _condition(obj, "Ready", "True", "Succeeded", stored),
                    _condition(obj, "ArtifactInStorage", "True", "Succeeded", stored),
                ],
            },
        )
        subject = gitsource.subject(step.data["repo"], step.data["sha"])
        self._event(key, obj, "Normal", "NewArtifact", f"stored artifact for commit '{subject}'", revision=revision)
        self._settle(key, (_generation(obj), _requested_at(obj)), now + self._interval(obj.get("spec") or {}))

    def _reconcile_helm_repository(self, key: ObjKey, obj: dict[str, Any]) -> None:
        desired = (_generation(obj), _requested_at(obj))
        now = time.monotonic()
        if (obj.get("spec") or {}).get("suspend") or not self._due(key, desired, now, obj.get("status") or {}):
            return
        digest = hashlib.sha256(str((obj.get("spec") or {}).get("url", "")).encode()).hexdigest()
        message = f"stored artifact: revision 'sha256:{digest}'"
        self._write_status(
            key,
            obj,
            {
                "observedGeneration": _generation(obj),
                "lastHandledReconcileAt": _requested_at(obj) or None,
                "artifact": {"revision": f"sha256:{digest}", "lastUpdateTime": _now()},
                "conditions": [
                    _condition(obj, "Ready", "True", "Succeeded", message),
                    _condition(obj, "ArtifactInStorage", "True", "Succeeded", message),
                ],
            },
        )
        self._settle(key, desired, now + self._interval(obj.get("spec") or {}))

    # --- kustomize-controller ------------------------------------------------------------------------------------

    def _reconcile_kustomization(self, key: ObjKey, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            return
        now = time.monotonic()
        step = self._steps.get(key)
        if step is None:
            self._start_kustomization(key, obj, spec, now)
            return
        if now < step.due:
            return
        del self._steps[key]
        try:
            if step.stage == "build":
                applied = self._build_and_apply(key, obj, step)
                step.data.update(applied)
                if spec.get("wait") or spec.get("healthChecks"):
                    timeout = _duration_text(spec.get("timeout") or spec.get("interval") or "5m")
                    self._progressing(
                        key,
                        obj,
                        f"Running health checks for revision {step.revision} with a timeout of {timeout}",
                        ready_message="Reconciliation in progress",
                    )
                    wait = self.timings.health_timeout_seconds if applied["unhealthy"] else self.timings.health_seconds
                    self._steps[key] = _Step("health", now + wait, step.revision, step.started, step.data)
                    return
            if step.data.get("unhealthy"):
                waiting = ", ".join(f"{ref} status: 'InProgress'" for ref in step.data["unhealthy"])
                raise _Failed("HealthCheckFailed", f"timeout waiting for: [{waiting}]")
            self._kustomization_succeeded(key, obj, step, now)
        except _Failed as failure:
            self._kustomization_failed(key, obj, step, failure, now)

    def _start_kustomization(self, key: ObjKey, obj: dict[str, Any], spec: dict[str, Any], now: float) -> None:
        source = self._source_of(obj)
        revision = ((source or {}).get("status") or {}).get("artifact", {}).get("revision", "") if source else ""
        desired = (revision, _generation(obj), _requested_at(obj))
        if not self._due(key, desired, now, obj.get("status") or {}, tracks_revision=True):
            return
        if not revision:  # as kustomize-controller: an artifact is needed, not a Ready source (it may be fetching)
            source_ref = spec.get("sourceRef") or {}
            kind = source_ref.get("kind", "GitRepository")
            name = f"{kind}/{source_ref.get('namespace') or key[1]}/{source_ref.get('name')}"
            message = f"Source '{name}' not found" if source is None else "Source artifact not found, retrying in 30s"
            self._set_waiting(key, obj, "ArtifactFailed", message)
            return
        blocker = self._blocking_dependency(key, obj, revision)
        if blocker:
            self._set_waiting(key, obj, "DependencyNotReady", f"dependency '{blocker}' is not ready")
            return
        self._waiting.pop(key, None)
        timeout = _duration_text(spec.get("timeout") or spec.get("interval") or "5m")
        self._progressing(
            key,
            obj,
            f"Building manifests for revision {revision} with a timeout of {timeout}",
            ready_message="Reconciliation in progress",
        )
        self._steps[key] = _Step("build", now + self.timings.build_seconds, revision, now, {"source": source})

    def _blocking_dependency(self, key: ObjKey, obj: dict[str, Any], revision: str) -> str:
        """The first dependency that is not Ready (at the same revision, when it comes from the same source)."""
        informer = self._informers[key[0]]
        for entry in (obj.get("spec") or {}).get("dependsOn") or []:
            namespace = entry.get("namespace") or key[1]
            dependency = informer.get(namespace, entry.get("name", ""))
            if dependency is None or not _is_ready(dependency):
                return f"{namespace}/{entry.get('name')}"
            applied = (dependency.get("status") or {}).get("lastAppliedRevision")
            if key[0] == "Kustomization" and _same_source(obj, dependency, key[1], namespace) and applied != revision:
                return f"{namespace}/{entry.get('name')}"
        return ""

    def _build_and_apply(self, key: ObjKey, obj: dict[str, Any], step: _Step) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        source = step.data["source"]
        sha = step.revision.rpartition(":")[2]
        repo = gitsource.repo_path((source.get("spec") or {}).get("url", ""))
        path = posixpath.normpath(str(spec.get("path") or "./")).lstrip("./") or ""
        files = gitsource.read_tree(repo, sha, path)
        if files is None:
            raise _Failed(
                "ArtifactFailed",
                f"kustomization path not found: stat /tmp/kustomization-{uuid.uuid4().hex[:10]}/{path}: "
                f"no such file or directory",
            )
        manifests = build_manifests(files, path)
        target_namespace = spec.get("targetNamespace") or ""
        inventory, applied, unhealthy = [], [], []
        # Namespaces and CRDs first, as kustomize-controller applies them in a stage of their own.
        for manifest in sorted(manifests, key=lambda m: m["kind"] not in ("Namespace", "CustomResourceDefinition")):
            ref, resource, namespace, result = self._apply(key, manifest, target_namespace)
            inventory.append(
                {
                    "id": f"{namespace}_{manifest['metadata']['name']}_{resource.group}_{resource.kind}",
                    "v": resource.version,
                }
            )
            applied.append(f"{ref} {result}")
            annotations = manifest["metadata"].get("annotations") or {}
            if resource.kind == "Deployment" and annotations.get(SIMULATE_ANNOTATION) == "unhealthy":
                unhealthy.append(ref)
        if spec.get("prune"):
            self._prune(obj, {entry["id"] for entry in inventory})
        return {"inventory": inventory, "applied": applied, "unhealthy": unhealthy}

    def _apply(self, key: ObjKey, manifest: dict[str, Any], target_namespace: str) -> tuple[str, Resource, str, str]:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        try:
            resource = self.client.resource(manifest["apiVersion"], kind)
        except ApiStatusError as error:
            raise _Failed("ReconciliationFailed", f"{kind}/{name} dry-run failed: {error.message}") from error
        namespace = (
            (target_namespace or manifest["metadata"].get("namespace") or "default") if resource.namespaced else ""
        )
        ref = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
        body = {k: v for k, v in manifest.items() if k != "status"}
        body["metadata"] = {
            **manifest["metadata"],
            "labels": {
                **(manifest["metadata"].get("labels") or {}),
                KUSTOMIZE_NAME_LABEL: key[2],
                KUSTOMIZE_NAMESPACE_LABEL: key[1],
            },
        }
        if namespace:
            body["metadata"]["namespace"] = namespace
        try:
            try:
                current = self.client.get(resource, namespace, name)
            except ApiStatusError as error:
                if error.code != 404:
                    raise
                written, result = self.client.create(resource, namespace, body), "created"
            else:
                written = self.client.patch(resource, namespace, name, body)
                result = (
                    "configured"
                    if written["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
                    else "unchanged"
                )
        except ApiStatusError as error:
            raise _Failed("ReconciliationFailed", f"{ref} dry-run failed: {error.message}") from error
        if kind == "Deployment":
            self._simulate_deployment(resource, written)
        return ref, resource, namespace, result

    def _simulate_deployment(self, resource: Resource, deployment: dict[str, Any]) -> None:
        """Play the deployment controller: ready at once, unless marked unhealthy."""
        replicas = int((deployment.get("spec") or {}).get("replicas", 1))
        unhealthy = (deployment["metadata"].get("annotations") or {}).get(SIMULATE_ANNOTATION) == "unhealthy"
        ready = 0 if unhealthy else replicas
        self.client.patch_status(
            resource,
            deployment["metadata"]["namespace"],
            deployment["metadata"]["name"],
            {
                "observedGeneration": deployment["metadata"].get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "False" if unhealthy else "True",
                        "reason": "MinimumReplicasUnavailable" if unhealthy else "MinimumReplicasAvailable",
                        "message": "Deployment does not have minimum availability."
                        if unhealthy
                        else "Deployment has minimum availability.",
                        "lastTransitionTime": _now(),
                        "lastUpdateTime": _now(),
                    }
                ],
            },
        )

    def _prune(self, obj: dict[str, Any], keep: set[str]) -> None:
        entries = (((obj.get("status") or {}).get("inventory") or {}).get("entries")) or []
        for entry in entries:
            if entry.get("id") in keep:
                continue
            parts = str(entry.get("id", "")).split("_")
            if len(parts) != 4:
                continue
            namespace, name, group, kind = parts
            try:
                resource = self.client.resource(f"{group}/{entry.get('v')}" if group else str(entry.get("v")), kind)
                self.client.delete(resource, namespace, name)
            except ApiStatusError as error:
                if error.code != 404:
                    raise

    def _kustomization_succeeded(self, key: ObjKey, obj: dict[str, Any], step: _Step, now: float) -> None:
        spec = obj.get("spec") or {}
        conditions = [_condition(obj, "Ready", "True", "ReconciliationSucceeded", f"Applied revision: {step.revision}")]
        if spec.get("wait") or spec.get("healthChecks"):
            conditions.append(
                _condition(obj, "Healthy", "True", "Succeeded", f"Health check passed in {now - step.started:.3f}s")
            )
        self._write_status(
            key,
            obj,
            {
                "observedGeneration": _generation(obj),
                "lastAppliedRevision": step.revision,
                "lastAttemptedRevision": step.revision,
                "lastHandledReconcileAt": _requested_at(obj) or None,
                "inventory": {"entries": step.data["inventory"]},
                "conditions": conditions,
            },
        )
        interval = _duration_text(spec.get("interval") or "10m")
        changes = "\n".join(step.data["applied"])
        self._event(
            key,
            obj,
            "Normal",
            "ReconciliationSucceeded",
            f"Reconciliation finished in {now - step.started:.3f}s, next run in {interval}\n{changes}",
            revision=step.revision,
        )
        self._settle(key, (step.revision, _generation(obj), _requested_at(obj)), now + self._interval(spec))

    def _kustomization_failed(
        self, key: ObjKey, obj: dict[str, Any], step: _Step, failure: _Failed, now: float
    ) -> None:
        # The Event first, then the status it explains: whoever sees the failure can find its Event.
        self._event(key, obj, "Warning", failure.reason, failure.message, revision=step.revision)
        self._write_status(
            key,
            obj,
            {
                "observedGeneration": _generation(obj),
                "lastAttemptedRevision": step.revision,
                "lastHandledReconcileAt": _requested_at(obj) or None,
                "conditions": [
                    # The attempt is over and will be retried: kustomize-controller's ProgressingWithRetry.
                    _condition(obj, "Reconciling", "True", "ProgressingWithRetry", failure.message),
                    _condition(obj, "Ready", "False", failure.reason, failure.message),
                ],
            },
        )
        self._settle(key, (step.revision, _generation(obj), _requested_at(obj)), now + self.timings.retry_seconds)

    # --- helm-controller -----------------------------------------------------------------------------------------

    def _reconcile_helm_release(self, key: ObjKey, obj: dict[str, Any]) -> None:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if spec.get("suspend"):
            return
        now = time.monotonic()
        step = self._steps.get(key)
        if step is None:
            try:
                chart, version = self._chart_version(key, obj)
            except _Failed as failure:
                self._set_waiting(key, obj, failure.reason, failure.message)
                return
            desired = (version, _generation(obj), _requested_at(obj), _simulated(obj))
            if not self._due(key, desired, now, status, tracks_revision=True):
                return
            blocker = self._blocking_dependency(key, obj, version)
            if blocker:
                self._set_waiting(key, obj, "DependencyNotReady", f"dependency '{blocker}' is not ready")
                return
            self._waiting.pop(key, None)
            action = "upgrade" if status.get("history") else "install"
            self._progressing(
                key,
                obj,
                f"Running '{action}' action with timeout of {_duration_text(spec.get('timeout') or '5m')}",
                ready_message="Reconciliation in progress",
            )
            self._steps[key] = _Step(
                "install", now + self.timings.install_seconds, version, now, {"chart": chart, "action": action}
            )
            return
        if now < step.due:
            return
        del self._steps[key]
        chart, action, version = step.data["chart"], step.data["action"], step.revision
        desired = (version, _generation(obj), _requested_at(obj), _simulated(obj))
        release = f"{key[1]}/{key[2]}"
        attempt = {  # what every outcome of this attempt records
            "observedGeneration": _generation(obj),
            "lastAttemptedRevision": version,
            "lastAttemptedReleaseAction": action,
            "lastHandledReconcileAt": _requested_at(obj) or None,
        }
        annotations = obj["metadata"].get("annotations") or {}
        if annotations.get(SIMULATE_ANNOTATION) == "fail":
            same_attempt = status.get("lastAttemptedRevision") == version and status.get(
                "observedGeneration"
            ) == _generation(obj)
            failures = (int(status.get("failures", 0)) if same_attempt else 0) + 1
            retries = int((((spec.get(action) or {}).get("remediation") or {}).get("retries")) or 0)
            reason = "InstallFailed" if action == "install" else "UpgradeFailed"
            message = (
                f"Helm {action} failed for release {release} with chart {chart}@{version}: "
                f"simulated failure ({SIMULATE_ANNOTATION}: fail)"
            )
            conditions = [
                _condition(obj, "Ready", "False", reason, message),
                _condition(obj, "Released", "False", reason, message),
            ]
            if failures > retries:
                conditions.insert(
                    0,
                    _condition(
                        obj, "Stalled", "True", "RetriesExceeded", f"Failed to {action} after {failures} attempt(s)"
                    ),
                )
                retry_at = float("inf")  # stalled: only a new spec or chart version starts it again
            else:
                conditions.insert(0, _condition(obj, "Reconciling", "True", "ProgressingWithRetry", message))
                retry_at = now + self.timings.retry_seconds
            self._event(key, obj, "Warning", reason, message, revision=version)
            self._write_status(
                key,
                obj,
                {
                    **attempt,
                    "failures": failures,
                    f"{action}Failures": failures,
                    "conditions": conditions,
                },
            )
            self._settle(key, desired, retry_at)
            return
        history = list(status.get("history") or [])
        number = int(history[0].get("version", 0)) + 1 if history else 1
        history.insert(
            0,
            {
                "name": key[2],
                "namespace": key[1],
                "version": number,
                "status": "deployed",
                "chartName": chart,
                "chartVersion": version,
                "appVersion": version.split("+")[0],
                "firstDeployed": history[-1]["firstDeployed"] if history else _now(),
                "lastDeployed": _now(),
                "digest": "sha256:" + hashlib.sha256(f"{release}{number}".encode()).hexdigest(),
            },
        )
        reason = "InstallSucceeded" if action == "install" else "UpgradeSucceeded"
        message = f"Helm {action} succeeded for release {release}.v{number} with chart {chart}@{version}"
        self._write_status(
            key,
            obj,
            {
                **attempt,
                "failures": 0,
                "history": history[:5],
                "conditions": [
                    _condition(obj, "Ready", "True", reason, message),
                    _condition(obj, "Released", "True", reason, message),
                ],
            },
        )
        self._event(key, obj, "Normal", reason, message, revision=version)
        self._settle(key, desired, now + self._interval(spec))

    def _chart_version(self, key: ObjKey, obj: dict[str, Any]) -> tuple[str, str]:
        """The chart name and the version the release would install now (with a +sha12 suffix from git)."""
        spec = obj.get("spec") or {}
        chart_spec = ((spec.get("chart") or {}).get("spec")) or {}
        source_ref = chart_spec.get("sourceRef") or {}
        kind, namespace = source_ref.get("kind", ""), source_ref.get("namespace") or key[1]
        chart = str(chart_spec.get("chart", key[2]))
        if kind not in ("HelmRepository", "GitRepository"):
            raise _Failed("ArtifactFailed", f"the simulator cannot fetch charts from {kind or 'spec.chartRef'} sources")
        source = self._informers[kind].get(namespace, source_ref.get("name", ""))
        if source is None or not ((source.get("status") or {}).get("artifact") or {}).get("revision"):
            raise _Failed(
                "ArtifactFailed",
                f"HelmChart '{namespace}/{key[1]}-{key[2]}' is not ready: "
                f"{kind} '{namespace}/{source_ref.get('name')}' is not ready",
            )
        if kind == "HelmRepository":
            return chart.rpartition("/")[2], _concrete_version(str(chart_spec.get("version") or "*"))
        revision = source["status"]["artifact"]["revision"]
        sha = revision.rpartition(":")[2]
        repo = gitsource.repo_path((source.get("spec") or {}).get("url", ""))
        path = posixpath.normpath(chart.lstrip("./"))
        files = gitsource.read_tree(repo, sha, path) or {}
        chart_yaml = files.get(f"{path}/Chart.yaml")
        if chart_yaml is None:
            raise _Failed(
                "ArtifactFailed",
                f"HelmChart '{namespace}/{key[1]}-{key[2]}' is not ready: "
                f"chart not found at '{path}' in revision {revision}",
            )
        metadata = yaml.safe_load(chart_yaml) or {}
        version = str(metadata.get("version", "0.1.0"))
        if chart_spec.get("reconcileStrategy") == "Revision":
            version = f"{version}+{sha[:12]}"
        return str(metadata.get("name", path.rpartition("/")[2])), version

    # --- shared helpers ------------------------------------------------------------------------------------------

    def _due(
        self,
        key: ObjKey,
        desired: tuple[Any, ...],
        now: float,
        status: dict[str, Any],
        *,
        tracks_revision: bool = False,
    ) -> bool:
        """Whether `key` needs a reconcile: what it should reflect changed, or its interval (or retry) came."""
        handled = self._handled.get(key)
        if handled is None:
            # After a (re)start, what was last handled is what the controller wrote into the status.
            handled = (status.get("observedGeneration"), status.get("lastHandledReconcileAt") or "")
            if tracks_revision:
                handled = (status.get("lastAttemptedRevision"), *handled)
            if handled != desired:
                return True
            self._handled[key] = handled
        return handled != desired or now >= self._next.get(key, 0.0)

    def _settle(self, key: ObjKey, handled: tuple[Any, ...], next_at: float) -> None:
        self._handled[key] = handled
        self._next[key] = next_at

    def _set_waiting(self, key: ObjKey, obj: dict[str, Any], reason: str, message: str) -> None:
        """Ready=False for a reason outside the object (a dependency, a source), written once per message."""
        if self._waiting.get(key) == message:
            return
        self._waiting[key] = message
        if reason != "DependencyNotReady":
            self._event(key, obj, "Warning", reason, message, revision="")
        self._write_status(
            key,
            obj,
            {
                "observedGeneration": _generation(obj),
                "conditions": [_condition(obj, "Ready", "False", reason, message)],
            },
        )

    def _source_of(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        ref = (obj.get("spec") or {}).get("sourceRef") or {}
        informer = self._informers.get(ref.get("kind", "GitRepository"))
        if informer is None:
            return None
        return informer.get(ref.get("namespace") or obj["metadata"].get("namespace", ""), ref.get("name", ""))

    def _interval(self, spec: dict[str, Any]) -> float:
        seconds = parse_go_duration(str(spec.get("interval") or "10m"))
        cap = self.timings.max_interval_seconds
        return min(seconds, cap) if cap is not None else seconds

    def _progressing(self, key: ObjKey, obj: dict[str, Any], message: str, *, ready_message: str = "") -> None:
        """Reconciling=True (Progressing) and Ready=Unknown, as every controller writes while it works."""
        conditions = [
            _condition(obj, "Reconciling", "True", "Progressing", message),
            _condition(obj, "Ready", "Unknown", "Progressing", ready_message or message),
        ]
        self._write_status(key, obj, {"conditions": conditions})

    def _write_status(self, key: ObjKey, obj: dict[str, Any], status: dict[str, Any]) -> None:
        kind, namespace, name = key
        self.client.patch_status(self._resources[kind], namespace, name, status)

    def _event(self, key: ObjKey, obj: dict[str, Any], type_: str, reason: str, message: str, *, revision: str) -> None:
        """A core/v1 Event on the object, as the Flux controllers record them (the revision in an annotation)."""
        kind, namespace, name = key
        group = obj["apiVersion"].partition("/")[0]
        component = {
            "source.toolkit.fluxcd.io": "source-controller",
            "kustomize.toolkit.fluxcd.io": "kustomize-controller",
            "helm.toolkit.fluxcd.io": "helm-controller",
        }.get(group, "flux")
        metadata: dict[str, Any] = {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace}
        if revision:
            metadata["annotations"] = {f"{group}/revision": revision}
        try:
            self.client.create(
                self._resources["Event"],
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
                    "firstTimestamp": _now(),
                    "lastTimestamp": _now(),
                    "count": 1,
                },
            )
        except ApiStatusError as error:
            log.warning("could not record event on %s/%s/%s: %s", *key, error)


def build_manifests(files: dict[str, bytes], path: str) -> list[dict[str, Any]]:
    """The objects a kustomize build of `path` yields, with kustomize's error wording; raises _Failed."""
    root = path.strip("/")

    def under(directory: str) -> list[str]:
        prefix = f"{directory}/" if directory else ""
        return sorted(name for name in files if name.startswith(prefix))

    def build(directory: str) -> list[dict[str, Any]]:
        kustomization = files.get(posixpath.join(directory, "kustomization.yaml").lstrip("/"))
        if kustomization is not None:
            try:
                config = yaml.safe_load(kustomization) or {}
            except yaml.YAMLError as error:
                raise _Failed("BuildFailed", f"kustomize build failed: {_yaml_problem(error)}") from error
            objects = []
            for entry in config.get("resources") or []:
                target = posixpath.normpath(posixpath.join(directory, str(entry))).lstrip("/")
                if target in files:
                    objects += parse_file(target)
                elif under(target):
                    objects += build(target)
                else:
                    raise _Failed(
                        "BuildFailed",
                        f"kustomize build failed: accumulating resources: accumulation err="
                        f"'accumulating resources from '{entry}': open {target}: "
                        f"no such file or directory'",
                    )
            return objects
        # No kustomization.yaml: like Flux, take every manifest below the path.
        objects = []
        for name in under(directory):
            if name.endswith((".yaml", ".yml")):
                objects += [obj for obj in parse_file(name) if "kind" in obj]
        return objects

    def parse_file(name: str) -> list[dict[str, Any]]:
        try:
            documents = [doc for doc in yaml.safe_load_all(files[name].decode("utf-8", "replace")) if doc is not None]
        except yaml.YAMLError as error:
            raise _Failed(
                "BuildFailed",
                f"kustomize build failed: accumulating resources from '{name}': "
                f"MalformedYAMLError: {_yaml_problem(error)} in File: {name}",
            ) from error
        for document in documents:
            if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
                raise _Failed("BuildFailed", f"kustomize build failed: {name}: missing metadata in object")
            if "kind" in document and not document["metadata"].get("name"):
                raise _Failed(
                    "BuildFailed",
                    f"kustomize build failed: {name}: missing metadata.name in object "
                    f"{{{document.get('apiVersion')} {document.get('kind')}}}",
                )
        return documents

    return build(root)


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"yaml: line {mark.line + 1}: {problem}" if mark is not None else f"yaml: {problem}"


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration (`1m0s`, `10m`, `1h30m`, `500ms`)."""
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total or 600.0


def _duration_text(text: str) -> str:
    seconds = int(parse_go_duration(text))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def _git_ref(ref: dict[str, Any]) -> tuple[str, str]:
    """The git ref to resolve and the pointer Flux writes before `@sha1:` in the revision."""
    if ref.get("name"):
        return str(ref["name"]), str(ref["name"])
    if ref.get("tag"):
        return f"refs/tags/{ref['tag']}", str(ref["tag"])
    if ref.get("commit"):
        return str(ref["commit"]), ""
    branch = str(ref.get("branch") or "master")
    return f"refs/heads/{branch}", branch


def _concrete_version(constraint: str) -> str:
    """A version satisfying a simple constraint (`1.16.x`, `>=1.0.0`, `*`), as a repository index would offer."""
    cleaned = re.sub(r"^[^\d]*", "", constraint.split(",")[0].strip())
    parts = [p if p.isdigit() else "0" for p in cleaned.split(".")[:3] if p] or ["1"]
    parts += ["0"] * (3 - len(parts))
    return ".".join(parts)


def _generation(obj: dict[str, Any]) -> int:
    return int(obj["metadata"].get("generation", 1))


def _simulated(obj: dict[str, Any]) -> str:
    """The simulator's own annotation counts as a spec change, so that pushing it takes effect at once."""
    return str((obj["metadata"].get("annotations") or {}).get(SIMULATE_ANNOTATION, ""))


def _requested_at(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("annotations") or {}).get(REQUESTED_AT, ""))


def _is_ready(obj: dict[str, Any] | None) -> bool:
    if obj is None:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def _same_source(a: dict[str, Any], b: dict[str, Any], a_namespace: str, b_namespace: str) -> bool:
    ref_a = (a.get("spec") or {}).get("sourceRef") or {}
    ref_b = (b.get("spec") or {}).get("sourceRef") or {}
    return (ref_a.get("kind"), ref_a.get("name"), ref_a.get("namespace") or a_namespace) == (
        ref_b.get("kind"),
        ref_b.get("name"),
        ref_b.get("namespace") or b_namespace,
    )


def _condition(obj: dict[str, Any], type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    """A condition at the object's current generation; its transition time is kept while its status holds."""
    previous = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)
    since = previous["lastTransitionTime"] if previous and previous.get("status") == status else _now()
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": _generation(obj),
        "lastTransitionTime": since,
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
