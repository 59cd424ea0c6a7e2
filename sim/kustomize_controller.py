"""The simulated kustomize-controller: Kustomizations build the YAML at their spec.path and apply it.

What it writes follows fluxcd/kustomize-controller@186fb3b2 internal/controller/kustomization_controller.go:
- `reconcile`: Reconciling "Fetching manifests for revision R with a timeout of T" with Ready=Unknown
  "Reconciliation in progress"; "kustomization path not found: ..." (ArtifactFailed) before
  status.lastAttemptedRevision is set; then "Building manifests for revision ...", BuildFailed,
  ReconciliationFailed, PruneFailed; `checkHealth`: "Running health checks for revision ...", Healthy, and
  HealthCheckFailed; on success "Applied revision: R";
- `checkDependencies`: "dependency 'ns/name' is not ready" unless the dependency is Ready at its generation, and
  "dependency 'ns/name' revision is not up to date" when it shares the source but has not applied its revision;
- `finalizeStatus`: status.observedGeneration moves (and Reconciling goes) only when Ready=True; on a failure
  Reconciling keeps its message and turns ProgressingWithRetry.

Simulation conventions: broken YAML gives BuildFailed, a missing path ArtifactFailed, an unknown kind
ReconciliationFailed. With `wait: true` (or healthChecks), a Deployment annotated `sim.fluxmon.dev/simulate:
unhealthy` never becomes ready: HealthCheckFailed after the health timeout.
"""

from __future__ import annotations

import posixpath
import uuid
from typing import Any

import yaml

from fluxmon.sim import gitsource
from fluxmon.sim.client import ApiStatusError, Resource
from fluxmon.sim.crds import PLURALS
from fluxmon.sim.reconciler import (
    SIMULATE_ANNOTATION,
    Conditions,
    Failed,
    ObjKey,
    Reconciler,
    Step,
    artifact_revision,
    duration_text,
    generation,
    is_ready,
    now_text,
    observed_generation,
    requested_at,
)

KUSTOMIZE_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
KUSTOMIZE_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"


class KustomizeController(Reconciler):
    kinds = (("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[ObjKey, str] = {}
        self._applied: dict[str, dict[str, Any]] = {}
        """What was last applied to each object (by its ref): a field applied then and not now is removed."""

    def reconcile_kustomization(self, key: ObjKey, obj: dict[str, Any]) -> None:
        finished = self.finished_step(key, obj, self._start)
        if finished is None:
            return
        step, now = finished
        spec = obj.get("spec") or {}
        conditions = Conditions(obj)
        try:
            if step.stage == "build":
                step.data.update(self._build_and_apply(key, obj, step, conditions))
                if spec.get("wait") or spec.get("healthChecks"):
                    message = f"Running health checks for revision {step.revision} with a timeout of {_timeout(spec)}"
                    conditions.mark_reconciling("Progressing", message)
                    conditions.set("Healthy", "Unknown", "Progressing", message)
                    self.write_status(key, conditions, lastAttemptedRevision=step.revision)
                    unhealthy = step.data["unhealthy"]
                    wait = self.timings.health_timeout_seconds if unhealthy else self.timings.health_seconds
                    self._steps[key] = Step("health", now + wait, step.revision, step.started, step.handles, step.data)
                    return
            if step.data.get("unhealthy"):
                waiting = ", ".join(f"{ref} status: 'InProgress'" for ref in step.data["unhealthy"])
                conditions.set("Healthy", "False", "HealthCheckFailed", f"timeout waiting for: [{waiting}]")
                raise Failed("HealthCheckFailed", f"timeout waiting for: [{waiting}]")
            self._succeeded(key, obj, step, conditions, now)
        except Failed as failure:
            self._failed(key, obj, step, conditions, failure, now)

    def _start(self, key: ObjKey, obj: dict[str, Any], spec: dict[str, Any], now: float) -> None:
        status = obj.get("status") or {}
        source = self._source_of(obj)
        revision = artifact_revision(source)
        desired = (revision, generation(obj), requested_at(obj))
        restored = (
            status.get("lastAttemptedRevision"),
            observed_generation(obj),
            status.get("lastHandledReconcileAt") or "",
        )
        if not self.due(key, desired, now, restored):
            return
        if not revision:  # as kustomize-controller: an artifact is needed, not a Ready source (it may be fetching)
            source_ref = spec.get("sourceRef") or {}
            plural = PLURALS.get(str(source_ref.get("kind", "GitRepository")), "gitrepositories")
            missing = f'{plural}.source.toolkit.fluxcd.io "{source_ref.get("name")}" not found'  # the API's NotFound
            message = missing if source is None else "Source artifact not found, retrying in 30s"
            self._wait(key, obj, "ArtifactFailed", message)
            return
        blocker = self._blocking_dependency(key, obj, revision)
        if blocker:
            self._wait(key, obj, "DependencyNotReady", blocker, revision=revision)
            return
        self._waiting.pop(key, None)
        conditions = Conditions(obj)
        conditions.set("Ready", "Unknown", "Progressing", "Reconciliation in progress")
        conditions.mark_reconciling(
            "Progressing", f"Fetching manifests for revision {revision} with a timeout of {_timeout(spec)}"
        )
        self.write_status(key, conditions)
        self._steps[key] = Step("build", now + self.timings.build_seconds, revision, now, desired, {"source": source})

    def _wait(self, key: ObjKey, obj: dict[str, Any], reason: str, message: str, *, revision: str = "") -> None:
        """Ready=False for a reason outside the object (a dependency, a source), written once per message."""
        if self._waiting.get(key) == message:
            return
        self._waiting[key] = message
        if reason == "DependencyNotReady":
            # kustomize-controller records the source artifact's revision on it (internal/controller/
            # kustomization_controller.go: r.event(..., source.GetArtifact().Revision, EventSeverityInfo, ...)).
            self.event(
                key,
                obj,
                "Normal",
                reason,
                "Dependencies do not meet ready condition, retrying in 30s",
                revision=revision,
            )
        conditions = Conditions(obj)
        conditions.set("Ready", "False", reason, message)
        conditions.retrying()
        self.write_status(key, conditions, lastHandledReconcileAt=requested_at(obj) or None)

    def _source_of(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        ref = (obj.get("spec") or {}).get("sourceRef") or {}
        informer = self.informers.get(ref.get("kind", "GitRepository"))
        if informer is None:
            return None
        return informer.get(ref.get("namespace") or obj["metadata"].get("namespace", ""), ref.get("name", ""))

    def _blocking_dependency(self, key: ObjKey, obj: dict[str, Any], revision: str) -> str:
        """Why a dependency holds this one back, in kustomize-controller's words; empty when none does."""
        informer = self.informers[key[0]]
        for entry in (obj.get("spec") or {}).get("dependsOn") or []:
            namespace = entry.get("namespace") or key[1]
            name = f"{namespace}/{entry.get('name')}"
            dependency = informer.get(namespace, entry.get("name", ""))
            if dependency is None:
                return f"unable to get '{name}' dependency: Kustomization.kustomize.toolkit.fluxcd.io not found"
            if generation(dependency) != observed_generation(dependency) or not is_ready(dependency):
                return f"dependency '{name}' is not ready"
            applied = (dependency.get("status") or {}).get("lastAppliedRevision")
            if _same_source(obj, dependency, key[1], namespace) and applied != revision:
                return f"dependency '{name}' revision is not up to date"
        return ""

    def _build_and_apply(self, key: ObjKey, obj: dict[str, Any], step: Step, conditions: Conditions) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        source = step.data["source"]
        sha = step.revision.rpartition(":")[2]
        repo = gitsource.repo_path((source.get("spec") or {}).get("url", ""))
        path = posixpath.normpath(str(spec.get("path") or "./")).lstrip("./") or ""
        # The whole artifact, as kustomize-controller extracts it and builds spec.path inside it (fluxcd/
        # kustomize-controller@00ed4876 internal/controller/kustomization_controller.go: `generator.SecureBuild(
        # tmpDir, dirPath, ...)`, rooted at the artifact): an overlay's `resources: [../base]` is found there too.
        files = gitsource.read_tree(repo, sha, "") or {}
        if path and not any(name == path or name.startswith(f"{path}/") for name in files):
            raise Failed(
                "ArtifactFailed",
                f"kustomization path not found: stat /tmp/kustomization-{uuid.uuid4().hex[:10]}/{path}: "
                f"no such file or directory",
            )
        step.data["attempted"] = True  # from here on, status.lastAttemptedRevision is this revision
        conditions.mark_reconciling(
            "Progressing", f"Building manifests for revision {step.revision} with a timeout of {_timeout(spec)}"
        )
        self.write_status(key, conditions, lastAttemptedRevision=step.revision)
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
            raise Failed("ReconciliationFailed", f"{kind}/{name} dry-run failed: {error.message}") from error
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
                written = self.client.patch(resource, namespace, name, _dropping(self._applied.get(ref), body))
                result = (
                    "configured"
                    if written["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
                    else "unchanged"
                )
        except ApiStatusError as error:
            raise Failed("ReconciliationFailed", f"{ref} dry-run failed: {error.message}") from error
        self._applied[ref] = body
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
                        "lastTransitionTime": now_text(),
                        "lastUpdateTime": now_text(),
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

    def _succeeded(self, key: ObjKey, obj: dict[str, Any], step: Step, conditions: Conditions, now: float) -> None:
        spec = obj.get("spec") or {}
        if spec.get("wait") or spec.get("healthChecks"):
            conditions.set("Healthy", "True", "Succeeded", f"Health check passed in {now - step.started:.3f}s")
        conditions.set("Ready", "True", "ReconciliationSucceeded", f"Applied revision: {step.revision}")
        conditions.delete("Reconciling")
        interval = duration_text(spec.get("interval") or "10m")
        changes = "\n".join(step.data["applied"])
        self.event(
            key,
            obj,
            "Normal",
            "ReconciliationSucceeded",
            f"Reconciliation finished in {now - step.started:.3f}s, next run in {interval}\n{changes}",
            revision=step.revision,
        )
        self.write_status(
            key,
            conditions,
            observedGeneration=step.handles[1],
            lastAppliedRevision=step.revision,
            lastAttemptedRevision=step.revision,
            lastHandledReconcileAt=step.handles[2] or None,
            inventory={"entries": step.data["inventory"]},
        )
        self.settle(key, step.handles, now + self.interval(spec))

    def _failed(
        self, key: ObjKey, obj: dict[str, Any], step: Step, conditions: Conditions, failure: Failed, now: float
    ) -> None:
        detail = failure.message
        if failure.reason == "HealthCheckFailed":
            detail = f"health check failed after {now - step.started:.3f}s: {failure.message}"
        # The Event first, then the status it explains: whoever sees the failure can find its Event.
        self.event(key, obj, "Warning", failure.reason, detail, revision=step.revision)
        conditions.set("Ready", "False", failure.reason, failure.message)
        conditions.retrying()
        fields: dict[str, Any] = {"lastHandledReconcileAt": step.handles[2] or None}
        if step.data.get("attempted"):
            fields["lastAttemptedRevision"] = step.revision
        self.write_status(key, conditions, **fields)
        self.settle(key, step.handles, now + self.timings.retry_seconds)


def _timeout(spec: dict[str, Any]) -> str:
    return duration_text(spec.get("timeout") or spec.get("interval") or "5m")


def _same_source(a: dict[str, Any], b: dict[str, Any], a_namespace: str, b_namespace: str) -> bool:
    ref_a = (a.get("spec") or {}).get("sourceRef") or {}
    ref_b = (b.get("spec") or {}).get("sourceRef") or {}
    return (ref_a.get("kind"), ref_a.get("name"), ref_a.get("namespace") or a_namespace) == (
        ref_b.get("kind"),
        ref_b.get("name"),
        ref_b.get("namespace") or b_namespace,
    )


def build_manifests(files: dict[str, bytes], path: str) -> list[dict[str, Any]]:
    """The objects a kustomize build of `path` yields, with kustomize's error wording; raises Failed."""
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
                raise Failed("BuildFailed", f"kustomize build failed: {_yaml_problem(error)}") from error
            objects = []
            for entry in config.get("resources") or []:
                target = posixpath.normpath(posixpath.join(directory, str(entry))).lstrip("/")
                if target in files:
                    objects += parse_file(target)
                elif under(target):
                    objects += build(target)
                else:
                    raise Failed(
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
            raise Failed(
                "BuildFailed",
                f"kustomize build failed: accumulating resources from '{name}': "
                f"MalformedYAMLError: {_yaml_problem(error)} in File: {name}",
            ) from error
        for document in documents:
            if not isinstance(document, dict) or not isinstance(document.get("metadata"), dict):
                raise Failed("BuildFailed", f"kustomize build failed: {name}: missing metadata in object")
            if "kind" in document and not document["metadata"].get("name"):
                raise Failed(
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


def _dropping(before: dict[str, Any] | None, now: dict[str, Any]) -> dict[str, Any]:
    """A merge patch that applies `now` and removes what was applied `before` and is no longer: the field manager
    of server-side apply, which kustomize-controller uses, owns those fields and drops them (an annotation or a
    `valuesFrom` reverted in git leaves the cluster too). Fields other managers set (`flux reconcile`'s
    requestedAt) are never in `before`, so they stay."""
    patch = dict(now)
    for field, old in (before or {}).items():
        if field not in now:
            patch[field] = None
        elif isinstance(old, dict) and isinstance(now[field], dict):
            patch[field] = _dropping(old, now[field])
    return patch
