"""The simulated helm-controller: HelmReleases get a HelmChart (or a chartRef), values, and an install or upgrade.

What it writes follows fluxcd/helm-controller@0f61a860:
- internal/controller/helmrelease_controller.go `reconcileRelease`: Reconciling=True "Fulfilling prerequisites"
  (reason Progressing) while dependencies, the source and the values are checked; a failure there is Ready=False
  with DependencyNotReady, ArtifactFailed, SourceNotReady ("HelmChart 'ns/name' is not ready: ...") or ValuesError
  (fluxcd/pkg@e2cfd1a2 chartutil/values.go: "could not resolve ConfigMap chart values reference 'ns/name' with key
  'values.yaml': ..."), and Reconciling stays as it was; status.observedGeneration moves only with no error and no
  requeue, or on a terminal error (the deferred patch);
- `mutateChartWithSourceRevision`: with a chartRef to an OCIRepository the chart version gets the first 12 hex of
  the artifact's sha256 digest as build metadata, and lastAttemptedRevisionDigest the digest;
- internal/reconcile/helmchart_template.go: the HelmChart `<namespace>-<name>` in the source's namespace, labelled
  with the release, and status.helmChart;
- internal/reconcile/atomic_release.go, install.go, upgrade.go, rollback_remediation.go,
  uninstall_remediation.go, release.go (`summarize`): "Running 'upgrade' action with timeout of 5m0s"; a failed
  action counts in status.failures and installFailures/upgradeFailures; while retries remain the release is
  remediated (uninstall after an install, rollback after an upgrade: Remediated=True, which Ready=False then
  shows) and retried at once with Reconciling=ProgressingWithRetry; once they are spent it is Stalled with
  RetriesExceeded "Failed to upgrade after N attempt(s)"; api/v2/helmrelease_types.go: `RetriesExhausted` is
  failures > retries, and an upgrade remediates its last failure too when retries > 0.

Simulation conventions: a HelmRelease annotated `sim.fluxmon.dev/simulate: fail` fails to install or upgrade (the
annotation counts as part of the release's configuration, so adding it starts an upgrade). ConfigMaps and Secrets
named in spec.valuesFrom are read from the API server.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import yaml

from fluxmon.sim.client import ApiStatusError
from fluxmon.sim.reconciler import (
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
    ready_message,
    requested_at,
    simulated,
)

HELM_NAME_LABEL = "helm.toolkit.fluxcd.io/name"
HELM_NAMESPACE_LABEL = "helm.toolkit.fluxcd.io/namespace"
MAX_HISTORY = 5


class _Waiting(Exception):
    """A prerequisite is not there yet (a dependency, the source): Ready=False, checked again on the next pass."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class HelmController(Reconciler):
    kinds = (("helm.toolkit.fluxcd.io/v2", "HelmRelease"),)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[ObjKey, str] = {}

    def reconcile_helmrelease(self, key: ObjKey, obj: dict[str, Any]) -> None:
        finished = self.finished_step(key, obj, self._start)
        if finished is None:
            return
        step, now = finished
        if step.stage == "release":
            self._released(key, obj, step, now)
        else:
            self._remediated(key, obj, step, now)

    # --- prerequisites ---------------------------------------------------------------------------------------

    def _start(self, key: ObjKey, obj: dict[str, Any], spec: dict[str, Any], now: float) -> None:
        status = obj.get("status") or {}
        chart_ref, written = self._chart_template(key, obj, spec)
        # The chart just written is the source even before the informer has it, as the real controller's cache
        # has it by the time it looks: it is then "not ready" (not reconciled yet), never "not found".
        source = self.informers[chart_ref[0]].get(chart_ref[1], chart_ref[2]) or written or self._read(chart_ref)
        gate = (artifact_revision(source), generation(obj), requested_at(obj), simulated(obj))
        restored = (
            artifact_revision(source),
            observed_generation(obj),
            status.get("lastHandledReconcileAt") or "",
            simulated(obj),
        )
        if not self.due(key, gate, now, restored):
            return
        try:
            self._check_dependencies(key, obj)
            chart, version, digest = self._source_chart(chart_ref, source)
            values = self._values(key, spec)
        except _Waiting as waiting:
            self._wait(key, obj, waiting.reason, waiting.message)
            return
        except Failed as failure:
            # ValuesError: retried with backoff, not on every pass; the push has failed until the values resolve.
            self._wait(key, obj, failure.reason, failure.message, warn=True)
            self.settle(key, gate, now + self.timings.retry_seconds)
            return
        self._waiting.pop(key, None)
        config = _config_digest(values, simulated(obj))
        conditions = Conditions(obj)
        for stale in ("DependencyNotReady", "ArtifactFailed", "SourceNotReady", "ValuesError"):
            if (conditions.get("Ready") or {}).get("reason") == stale:
                conditions.set("Ready", "Unknown", "Progressing", "reconciliation in progress")
        fields: dict[str, Any] = {}
        if chart_ref[0] == "HelmChart" and spec.get("chart"):
            fields["helmChart"] = f"{chart_ref[1]}/{chart_ref[2]}"
        failures = _failures(status)
        if (
            status.get("lastAttemptedGeneration") != generation(obj)
            or status.get("lastAttemptedRevision") != version
            or status.get("lastAttemptedConfigDigest") != config
        ):
            failures = {"failures": 0, "installFailures": 0, "upgradeFailures": 0}  # action.MustResetFailures
        history = list(status.get("history") or [])
        latest = history[0] if history else None
        deployed = latest is not None and latest.get("status") == "deployed"
        if (
            deployed
            and latest is not None
            and (latest.get("chartVersion"), latest.get("configDigest"))
            == (
                version,
                config,
            )
        ):
            self._in_sync(key, obj, conditions, gate, now, fields)
            return
        action = "upgrade" if deployed or (latest is not None and latest.get("status") == "failed") else "install"
        attempt = {
            **fields,
            **{name: count or None for name, count in failures.items()},
            "lastAttemptedGeneration": generation(obj),
            "lastAttemptedRevision": version,
            "lastAttemptedRevisionDigest": digest or None,
            "lastAttemptedConfigDigest": config,
            "lastAttemptedReleaseAction": action,
        }
        retries = _retries(spec, action)
        if failures[f"{action}Failures"] > retries:
            # Retries were spent before this reconcile (a restart, or a reconcile request): still stalled.
            count = failures[f"{action}Failures"]
            conditions.mark_stalled("RetriesExceeded", f"Failed to {action} after {count} attempt(s)")
            self.write_status(
                key, conditions, observedGeneration=generation(obj), lastHandledReconcileAt=gate[2] or None, **attempt
            )
            self.settle(key, gate, float("inf"))
            return
        message = f"Running '{action}' action with timeout of {_timeout(spec, action)}"
        conditions.mark_reconciling("Progressing", message)
        conditions.set("Ready", "Unknown", "Progressing", message)
        conditions.delete("Remediated")
        self.write_status(key, conditions, **attempt)
        data = {"chart": chart, "action": action, "config": config, "digest": digest}
        self._steps[key] = Step("release", now + self.timings.install_seconds, version, now, gate, data)

    def _chart_template(
        self, key: ObjKey, obj: dict[str, Any], spec: dict[str, Any]
    ) -> tuple[tuple[str, str, str], dict[str, Any] | None]:
        """The source of the chart: spec.chartRef, or the HelmChart this release keeps in step with spec.chart
        (with the HelmChart as written, when this call wrote it)."""
        chart_ref = spec.get("chartRef")
        if chart_ref:
            kind = str(chart_ref.get("kind", "OCIRepository"))
            return (kind, str(chart_ref.get("namespace") or key[1]), str(chart_ref.get("name", ""))), None
        template = (spec.get("chart") or {}).get("spec") or {}
        source_ref = template.get("sourceRef") or {}
        namespace = str(source_ref.get("namespace") or key[1])
        name = f"{key[1]}-{key[2]}"
        wanted = {
            "chart": template.get("chart", ""),
            "version": template.get("version") or "*",
            "sourceRef": {"kind": source_ref.get("kind", ""), "name": source_ref.get("name", "")},
            "interval": template.get("interval") or spec.get("interval") or "10m",
            "reconcileStrategy": template.get("reconcileStrategy") or "ChartVersion",
        }
        current = self.informers["HelmChart"].get(namespace, name)
        written = None
        if current is None or {k: (current.get("spec") or {}).get(k) for k in wanted} != wanted:
            body = {
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "kind": "HelmChart",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {HELM_NAME_LABEL: key[2], HELM_NAMESPACE_LABEL: key[1]},
                },
                "spec": wanted,
            }
            try:
                if current is None:
                    written = self.client.create(self.resource("HelmChart"), namespace, body)
                else:
                    written = self.client.patch(self.resource("HelmChart"), namespace, name, {"spec": wanted})
                self.event(
                    key,
                    obj,
                    "Normal",
                    "HelmChartCreated" if current is None else "HelmChartConfigured",
                    f"{'Created' if current is None else 'Configured'} HelmChart/{namespace}/{name} with SourceRef "
                    f"'{source_ref.get('kind')}/{namespace}/{source_ref.get('name')}'",
                    revision="",
                )
            except ApiStatusError as error:
                if error.code != 409:
                    raise
        return ("HelmChart", namespace, name), written

    def _read(self, ref: tuple[str, str, str]) -> dict[str, Any] | None:
        """A source the informer has not seen, read from the API server (helm-controller's DirectSourceFetch): one
        applied in the same batch as the release is there, only not yet in the cache."""
        kind, namespace, name = ref
        try:
            return self.client.get(self.resource(kind), namespace, name)
        except ApiStatusError as error:
            if error.code != 404:
                raise
            return None

    def _check_dependencies(self, key: ObjKey, obj: dict[str, Any]) -> None:
        for entry in (obj.get("spec") or {}).get("dependsOn") or []:
            namespace = entry.get("namespace") or key[1]
            dependency = self.informers["HelmRelease"].get(namespace, entry.get("name", ""))
            if (
                dependency is None
                or generation(dependency) != observed_generation(dependency)
                or not is_ready(dependency)
            ):
                raise _Waiting("DependencyNotReady", f"dependency '{namespace}/{entry.get('name')}' is not ready")

    def _source_chart(self, chart_ref: tuple[str, str, str], source: dict[str, Any] | None) -> tuple[str, str, str]:
        """The chart name and version to release, and the OCI digest they came with (helm-controller's view)."""
        kind, namespace, name = chart_ref
        if source is None:
            plural = f"{kind.lower()}s"
            raise _Waiting(
                "ArtifactFailed",
                f'could not get Source object: {plural}.source.toolkit.fluxcd.io "{name}" not found',
            )
        if generation(source) != observed_generation(source):
            detail = "latest generation of object has not been reconciled"
            if Conditions(source).status("Ready") == "False":
                detail = ready_message(source)
            raise _Waiting("SourceNotReady", f"{kind} '{namespace}/{name}' is not ready: {detail}")
        revision = artifact_revision(source)
        if not revision:
            raise _Waiting("SourceNotReady", f"{kind} '{namespace}/{name}' is not ready: does not have an artifact")
        if kind == "HelmChart":
            return str((source.get("status") or {}).get("observedChartName", "")), revision, ""
        # An OCIRepository: `<tag>@sha256:<hex>`; the chart version gets the first 12 hex as build metadata.
        tag, _, digest = revision.rpartition("@")
        url = str((source.get("spec") or {}).get("url", ""))
        version = f"{tag or '0.0.0'}+{digest.rpartition(':')[2][:12]}"
        return url.rstrip("/").rpartition("/")[2], version, digest

    def _values(self, key: ObjKey, spec: dict[str, Any]) -> dict[str, Any]:
        """spec.valuesFrom merged in order, then spec.values: chartutil.ChartValuesFromReferences, small."""
        merged: dict[str, Any] = {}
        for ref in spec.get("valuesFrom") or []:
            kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
            values_key = str(ref.get("valuesKey") or "values.yaml")
            optional = " optional" if ref.get("optional") else ""
            where = (
                f"could not resolve{optional} {kind} chart values reference '{key[1]}/{name}' with key '{values_key}'"
            )
            if kind not in ("ConfigMap", "Secret"):
                raise Failed("ValuesError", f"{where}: unsupported values reference kind")
            try:
                found = self.client.get(self.client.resource("v1", kind), key[1], name)
            except ApiStatusError as error:
                if error.code != 404:
                    raise
                if ref.get("optional"):
                    continue
                raise Failed("ValuesError", f"{where}: {error.message}") from error
            data = found.get("data") or {}
            if values_key not in data:
                if ref.get("optional"):
                    continue
                raise Failed("ValuesError", f"{where}: key not found")
            text = base64.b64decode(data[values_key]).decode() if kind == "Secret" else str(data[values_key])
            try:
                loaded = yaml.safe_load(text) or {}
            except yaml.YAMLError as error:
                raise Failed("ValuesError", f"{where}: failed to read values data: {error}") from error
            merged = _merge(merged, loaded if isinstance(loaded, dict) else {})
        return _merge(merged, spec.get("values") or {})

    def _wait(self, key: ObjKey, obj: dict[str, Any], reason: str, message: str, *, warn: bool = False) -> None:
        """Ready=False under Reconciling "Fulfilling prerequisites", written (and its Event sent) once per message."""
        if self._waiting.get(key) == message:
            return
        self._waiting[key] = message
        if warn:
            self.event(key, obj, "Warning", reason, message, revision="")
        elif reason == "DependencyNotReady":
            self.event(key, obj, "Normal", reason, message, revision="")
        conditions = Conditions(obj)
        conditions.mark_reconciling("Progressing", "Fulfilling prerequisites")
        conditions.set("Ready", "False", reason, message)
        self.write_status(key, conditions, lastHandledReconcileAt=requested_at(obj) or None)

    # --- the release -----------------------------------------------------------------------------------------

    def _in_sync(
        self,
        key: ObjKey,
        obj: dict[str, Any],
        conditions: Conditions,
        gate: tuple[Any, ...],
        now: float,
        fields: dict[str, Any],
    ) -> None:
        released = conditions.get("Released")
        if released is not None and released.get("status") == "True":
            conditions.set("Ready", "True", str(released.get("reason")), str(released.get("message")))
        for stale in ("Reconciling", "Stalled"):
            conditions.delete(stale)
        self.write_status(
            key, conditions, observedGeneration=generation(obj), lastHandledReconcileAt=gate[2] or None, **fields
        )
        self.settle(key, gate, now + self.interval(obj.get("spec") or {}))

    def _released(self, key: ObjKey, obj: dict[str, Any], step: Step, now: float) -> None:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        chart, action, version = step.data["chart"], step.data["action"], step.revision
        release = f"{key[1]}/{key[2]}"
        history = list(status.get("history") or [])
        number = int(history[0].get("version", 0)) + 1 if history else 1
        failed = simulated(obj) == "fail"
        history.insert(0, _snapshot(key, number, "failed" if failed else "deployed", chart, version, step, history))
        conditions = Conditions(obj)
        fields: dict[str, Any] = {
            "history": history[:MAX_HISTORY],
            "lastHandledReconcileAt": step.handles[2] or None,
            "lastAttemptedReleaseActionDuration": f"{now - step.started:.3f}s",
        }
        if not failed:
            reason = "InstallSucceeded" if action == "install" else "UpgradeSucceeded"
            message = f"Helm {action} succeeded for release {release}.v{number} with chart {chart}@{version}"
            conditions.set("Released", "True", reason, message)
            conditions.set("Ready", "True", reason, message)
            for stale in ("Reconciling", "Stalled", "Remediated"):
                conditions.delete(stale)
            self.event(key, obj, "Normal", reason, message, revision=version)
            self.write_status(key, conditions, observedGeneration=generation(obj), **fields)
            self.settle(key, step.handles, now + self.interval(spec))
            return
        reason = "InstallFailed" if action == "install" else "UpgradeFailed"
        message = (
            f"Helm {action} failed for release {release} with chart {chart}@{version}: "
            f"simulated failure (sim.fluxmon.dev/simulate: fail)"
        )
        failures = _failures(status)
        failures["failures"] += 1
        failures[f"{action}Failures"] += 1
        count = failures[f"{action}Failures"]
        fields.update({name: value or None for name, value in failures.items()})  # omitempty, as the Go types
        conditions.set("Released", "False", reason, message)
        conditions.set("Ready", "False", reason, message)
        self.event(key, obj, "Warning", reason, message, revision=version)
        retries = _retries(spec, action)
        remediate_last = action == "upgrade" and _remediate_last_failure(spec, retries)
        if count > retries and not remediate_last:
            conditions.mark_stalled("RetriesExceeded", f"Failed to {action} after {count} attempt(s)")
            self.write_status(key, conditions, observedGeneration=generation(obj), **fields)
            self.settle(key, step.handles, float("inf"))
            return
        remediation = "uninstall" if action == "install" else "rollback"
        conditions.mark_reconciling(
            "Progressing", f"Running '{remediation}' action with timeout of {_timeout(spec, remediation)}"
        )
        self.write_status(key, conditions, **fields)
        step.data.update(remediation=remediation, count=count, exhausted=count > retries)
        self._steps[key] = Step("remediate", now + self.timings.install_seconds, version, now, step.handles, step.data)

    def _remediated(self, key: ObjKey, obj: dict[str, Any], step: Step, now: float) -> None:
        status = obj.get("status") or {}
        history = list(status.get("history") or [])
        failed = history[0] if history else {}
        previous = next((s for s in history[1:] if s.get("status") in ("deployed", "superseded")), None)
        conditions = Conditions(obj)
        if step.data["remediation"] == "rollback" and previous is not None:
            number = int(failed.get("version", 0)) + 1
            rolled_back = {**previous, "version": number, "status": "deployed", "lastDeployed": now_text()}
            history.insert(0, rolled_back)
            message = (
                f"Helm rollback to previous release {key[1]}/{key[2]}.v{previous.get('version')} with chart "
                f"{previous.get('chartName')}@{previous.get('chartVersion')} succeeded"
            )
            reason = "RollbackSucceeded"
        else:
            if history:
                history[0] = {**failed, "status": "uninstalled", "deleted": now_text()}
            message = (
                f"Helm uninstall remediation for release {key[1]}/{key[2]}.v{failed.get('version')} with chart "
                f"{failed.get('chartName')}@{failed.get('chartVersion')} succeeded"
            )
            reason = "UninstallSucceeded"
        conditions.set("Remediated", "True", reason, message)
        conditions.set("Ready", "False", reason, message)  # summarize: a remediated release is not Ready
        self.event(key, obj, "Normal", reason, message, revision=step.revision)
        fields: dict[str, Any] = {"history": history[:MAX_HISTORY], "lastHandledReconcileAt": step.handles[2] or None}
        if step.data["exhausted"]:
            action = step.data["action"]
            conditions.mark_stalled("RetriesExceeded", f"Failed to {action} after {step.data['count']} attempt(s)")
            self.write_status(key, conditions, observedGeneration=generation(obj), **fields)
            self.settle(key, step.handles, float("inf"))
            return
        # Retries remain: requeued at once, reporting the failure it retries.
        conditions.mark_reconciling("ProgressingWithRetry", message)
        self.write_status(key, conditions, **fields)
        self.settle(key, step.handles, now)


def _snapshot(
    key: ObjKey, number: int, state: str, chart: str, version: str, step: Step, history: list[dict[str, Any]]
) -> dict[str, Any]:
    snapshot = {
        "name": key[2],
        "namespace": key[1],
        "version": number,
        "status": state,
        "chartName": chart,
        "chartVersion": version,
        "appVersion": version.split("+")[0],
        "configDigest": step.data["config"],
        "firstDeployed": history[-1]["firstDeployed"] if history else now_text(),
        "lastDeployed": now_text(),
        "digest": "sha256:" + hashlib.sha256(f"{key}{number}".encode()).hexdigest(),
    }
    if step.data["digest"]:
        snapshot["ociDigest"] = step.data["digest"]
    return snapshot


def _failures(status: dict[str, Any]) -> dict[str, int]:
    return {name: int(status.get(name) or 0) for name in ("failures", "installFailures", "upgradeFailures")}


def _retries(spec: dict[str, Any], action: str) -> int:
    return int((((spec.get(action) or {}).get("remediation") or {}).get("retries")) or 0)


def _remediate_last_failure(spec: dict[str, Any], retries: int) -> bool:
    configured = ((spec.get("upgrade") or {}).get("remediation") or {}).get("remediateLastFailure")
    return bool(configured) if configured is not None else retries > 0


def _timeout(spec: dict[str, Any], action: str) -> str:
    return duration_text(str((spec.get(action) or {}).get("timeout") or spec.get("timeout") or "5m"))


def _config_digest(values: dict[str, Any], simulate: str) -> str:
    text = json.dumps({"values": values, "simulate": simulate} if simulate else values, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged
