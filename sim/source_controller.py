"""The simulated source-controller: GitRepository, OCIRepository, HelmRepository and HelmChart.

What it writes follows fluxcd/source-controller@39b711b1:
- internal/controller/gitrepository_controller.go: `reconcile` (Reconciling "processing object: new generation
  N -> M" when the spec changed), `gitCheckout` ("failed to checkout and determine revision: ..." as FetchFailed
  with GitOperationFailed), `reconcileSource` ("building artifact: new upstream revision '...'"), and the
  "stored artifact for revision '...'" of `reconcileArtifact`;
- internal/reconcile/reconcile.go `ComputeReconcileResult`: on an error Reconciling turns ProgressingWithRetry and
  status.observedGeneration stays where it was; it moves only on success;
- internal/reconcile/summarize: Ready=False takes the reason and message of the failing condition (FetchFailed);
- internal/controller/ocirepository_controller.go: the revision `<tag>@sha256:<digest>` and "stored artifact for
  digest '...'";
- internal/controller/helmchart_controller.go and internal/helm/chart/builder.go (`Build.Summary`): "packaged
  'podinfo' chart with version '6.0.3+<12 hex>'" from a GitRepository with reconcileStrategy Revision (the first
  12 hex of the commit), "pulled 'redis' chart with version '20.0.0'" from a HelmRepository.
The missing branch message is go-git's, wrapped by fluxcd/pkg@e2cfd1a2 git/gogit/clone.go ("unable to clone
'<url>': couldn't find remote ref \"refs/heads/<branch>\"", as git/gogit/clone_test.go expects).

Simulation conventions: a GitRepository follows a local bare repository (`file:///path/fleet.git` or a plain path).
An OCIRepository is served by a registry the simulator makes up: a tag resolves to a digest derived from the URL
and the tag, and the artifact is a chart named after the URL's last segment at the tag's version.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import time
from typing import Any

import yaml

from fluxmon.sim import gitsource
from fluxmon.sim.reconciler import (
    Conditions,
    Failed,
    ObjKey,
    Reconciler,
    Step,
    artifact_revision,
    generation,
    now_text,
    observed_generation,
    requested_at,
)

STORAGE = "http://source-controller.flux-system.svc.cluster.local."


class SourceController(Reconciler):
    kinds = (
        ("source.toolkit.fluxcd.io/v1", "GitRepository"),
        ("source.toolkit.fluxcd.io/v1", "OCIRepository"),
        ("source.toolkit.fluxcd.io/v1", "HelmRepository"),
        ("source.toolkit.fluxcd.io/v1", "HelmChart"),
    )

    # --- GitRepository -------------------------------------------------------------------------------------------

    def reconcile_gitrepository(self, key: ObjKey, obj: dict[str, Any]) -> None:
        finished = self.finished_step(key, obj, self._start_git_fetch)
        if finished is None:
            return
        step, now = finished
        stored = f"stored artifact for revision '{step.revision}'"
        conditions = Conditions(obj)
        for stale in ("ArtifactOutdated", "FetchFailed", "Reconciling", "Stalled"):
            conditions.delete(stale)
        conditions.set("ArtifactInStorage", "True", "Succeeded", stored)
        conditions.set("Ready", "True", "Succeeded", stored)
        sha = step.data["sha"]
        self.event(
            key,
            obj,
            "Normal",
            "NewArtifact",
            f"stored artifact for commit '{gitsource.subject(step.data['repo'], sha)}'",
            revision=step.revision,
        )
        self.write_status(
            key,
            conditions,
            observedGeneration=step.handles[0],
            lastHandledReconcileAt=step.handles[1] or None,
            artifact=_artifact(key, step.revision, f"{sha}.tar.gz"),
        )
        self.settle(key, step.handles, now + self.interval(obj.get("spec") or {}))

    def _start_git_fetch(self, key: ObjKey, obj: dict[str, Any], spec: dict[str, Any], now: float) -> None:
        status = obj.get("status") or {}
        desired = (generation(obj), requested_at(obj))
        restored = (observed_generation(obj), status.get("lastHandledReconcileAt") or "")
        if not self.due(key, desired, now, restored):
            return
        conditions = Conditions(obj)
        if generation(obj) != observed_generation(obj):
            message = f"processing object: new generation {observed_generation(obj)} -> {generation(obj)}"
            conditions.progressive(message, drift=False)
            self.write_status(key, conditions)
        elif requested_at(obj) != (status.get("lastHandledReconcileAt") or ""):
            conditions.progressive("reconciliation in progress", drift=False)
            self.write_status(key, conditions)
        url = str(spec.get("url", ""))
        ref, pointer = _git_ref(spec.get("ref") or {})
        try:
            repo = gitsource.repo_path(url)
            sha = gitsource.resolve(repo, ref)
        except gitsource.GitSourceError as error:
            message = f"failed to checkout and determine revision: unable to clone '{url}': {_clone_error(ref, error)}"
            self.event(key, obj, "Warning", "GitOperationFailed", message, revision="")
            conditions.set("FetchFailed", "True", "GitOperationFailed", message)
            conditions.set("Ready", "False", "GitOperationFailed", message)
            conditions.delete("Stalled")
            conditions.retrying()
            self.write_status(key, conditions, lastHandledReconcileAt=desired[1] or None)
            self.settle(key, desired, now + self.timings.retry_seconds)
            return
        revision = f"{pointer}@sha1:{sha}" if pointer else f"sha1:{sha}"
        if artifact_revision(obj) == revision and conditions.is_true("ArtifactInStorage"):
            # Nothing new upstream: the no-op success of reconcileSource (GitOperationSucceed, ignored).
            stored = f"stored artifact for revision '{revision}'"
            for stale in ("FetchFailed", "Reconciling", "Stalled"):
                conditions.delete(stale)
            conditions.set("ArtifactInStorage", "True", "Succeeded", stored)
            conditions.set("Ready", "True", "Succeeded", stored)
            self.write_status(key, conditions, observedGeneration=desired[0], lastHandledReconcileAt=desired[1] or None)
            self.settle(key, desired, now + self.interval(spec))
            return
        message = f"new upstream revision '{revision}'"
        conditions.delete("FetchFailed")
        if artifact_revision(obj):
            conditions.set("ArtifactOutdated", "True", "NewRevision", message)
        conditions.progressive(f"building artifact: {message}", drift=True)
        self.write_status(key, conditions)
        self._steps[key] = Step(
            "fetch", now + self.timings.fetch_seconds, revision, now, desired, {"repo": repo, "sha": sha}
        )

    # --- OCIRepository -------------------------------------------------------------------------------------------

    def reconcile_ocirepository(self, key: ObjKey, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            return
        now = time.monotonic()
        step = self._steps.get(key)
        if step is None:
            status = obj.get("status") or {}
            desired = (generation(obj), requested_at(obj))
            restored = (observed_generation(obj), status.get("lastHandledReconcileAt") or "")
            if not self.due(key, desired, now, restored):
                return
            url = str(spec.get("url", ""))
            tag = _oci_tag(spec.get("ref") or {})
            digest = hashlib.sha256(f"{url}:{tag}".encode()).hexdigest()
            revision = f"{tag}@sha256:{digest}"
            conditions = Conditions(obj)
            if artifact_revision(obj) == revision and conditions.is_true("ArtifactInStorage"):
                self.write_status(key, lastHandledReconcileAt=desired[1] or None)
                self.settle(key, desired, now + self.interval(spec))
                return
            message = f"new revision '{revision}' for '{url}:{tag}'"
            if artifact_revision(obj):
                conditions.set("ArtifactOutdated", "True", "NewRevision", message)
            conditions.progressive(f"building artifact: {message}", drift=True)
            self.write_status(key, conditions)
            self._steps[key] = Step("fetch", now + self.timings.fetch_seconds, revision, now, desired, {"url": url})
            return
        if now < step.due:
            return
        del self._steps[key]
        stored = f"stored artifact for digest '{step.revision}'"
        conditions = Conditions(obj)
        for stale in ("ArtifactOutdated", "FetchFailed", "Reconciling", "Stalled"):
            conditions.delete(stale)
        conditions.set("ArtifactInStorage", "True", "Succeeded", stored)
        conditions.set("Ready", "True", "Succeeded", stored)
        self.event(
            key,
            obj,
            "Normal",
            "NewArtifact",
            f"stored artifact with revision '{step.revision}' from '{step.data['url']}'",
            revision=step.revision,
        )
        digest = step.revision.rpartition(":")[2]
        self.write_status(
            key,
            conditions,
            observedGeneration=step.handles[0],
            lastHandledReconcileAt=step.handles[1] or None,
            artifact=_artifact(key, step.revision, f"{digest}.tar.gz"),
        )
        self.settle(key, step.handles, now + self.interval(spec))

    # --- HelmRepository ------------------------------------------------------------------------------------------

    def reconcile_helmrepository(self, key: ObjKey, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        desired = (generation(obj), requested_at(obj))
        restored = (observed_generation(obj), status.get("lastHandledReconcileAt") or "")
        now = time.monotonic()
        if spec.get("suspend") or not self.due(key, desired, now, restored):
            return
        digest = hashlib.sha256(str(spec.get("url", "")).encode()).hexdigest()
        message = f"stored artifact: revision 'sha256:{digest}'"
        conditions = Conditions(obj)
        for stale in ("FetchFailed", "Reconciling", "Stalled"):
            conditions.delete(stale)
        conditions.set("ArtifactInStorage", "True", "Succeeded", message)
        conditions.set("Ready", "True", "Succeeded", message)
        self.write_status(
            key,
            conditions,
            observedGeneration=desired[0],
            lastHandledReconcileAt=desired[1] or None,
            artifact=_artifact(key, f"sha256:{digest}", "index.yaml"),
        )
        self.settle(key, desired, now + self.interval(spec))

    # --- HelmChart -----------------------------------------------------------------------------------------------

    def reconcile_helmchart(self, key: ObjKey, obj: dict[str, Any]) -> None:
        spec = obj.get("spec") or {}
        if spec.get("suspend"):
            return
        now = time.monotonic()
        source_ref = spec.get("sourceRef") or {}
        kind, name = str(source_ref.get("kind", "")), str(source_ref.get("name", ""))
        informer = self.informers.get(kind)
        source = informer.get(key[1], name) if informer is not None else None
        status = obj.get("status") or {}
        desired = (generation(obj), requested_at(obj), artifact_revision(source))
        restored = (
            observed_generation(obj),
            status.get("lastHandledReconcileAt") or "",
            status.get("observedSourceArtifactRevision", ""),
        )
        if not self.due(key, desired, now, restored):
            return
        conditions = Conditions(obj)
        conditions.progressive("reconciliation in progress", drift=False)
        try:
            if source is None:
                raise Failed(
                    "SourceUnavailable",
                    f'failed to get source: {kind.lower()}s.source.toolkit.fluxcd.io "{name}" not found',
                )
            if not artifact_revision(source):
                raise Failed("NoSourceArtifact", f"no artifact available for {kind} source '{name}'")
            chart, version, packaged = self._build_chart(spec, kind, source)
        except Failed as failure:
            if failure.reason != "NoSourceArtifact":
                self.event(key, obj, "Warning", failure.reason, failure.message, revision="")
            conditions.set("FetchFailed", "True", failure.reason, failure.message)
            conditions.set("Ready", "False", failure.reason, failure.message)
            conditions.retrying()
            self.write_status(key, conditions, lastHandledReconcileAt=desired[1] or None)
            self.settle(key, desired, now + self.timings.retry_seconds)
            return
        summary = f"{'packaged' if packaged else 'pulled'} '{chart}' chart with version '{version}'"
        reason = "ChartPackageSucceeded" if packaged else "ChartPullSucceeded"
        for stale in ("ArtifactOutdated", "FetchFailed", "Reconciling", "Stalled"):
            conditions.delete(stale)
        conditions.set("ArtifactInStorage", "True", reason, summary)
        conditions.set("Ready", "True", reason, summary)
        if artifact_revision(obj) != version:
            self.event(key, obj, "Normal", reason, summary, revision=version)
        self.write_status(
            key,
            conditions,
            observedGeneration=desired[0],
            lastHandledReconcileAt=desired[1] or None,
            observedSourceArtifactRevision=desired[2],
            observedChartName=chart,
            artifact=_artifact(key, version, f"{chart}-{version}.tgz"),
        )
        self.settle(key, desired, now + self.interval(spec))

    def _build_chart(self, spec: dict[str, Any], kind: str, source: dict[str, Any]) -> tuple[str, str, bool]:
        """The chart name and version a build gives, and whether it was packaged from source (or pulled)."""
        chart = str(spec.get("chart", ""))
        if kind == "HelmRepository":
            return chart.rpartition("/")[2], concrete_version(str(spec.get("version") or "*")), False
        if kind != "GitRepository":
            raise Failed("UnsupportedSourceKind", f"the simulator cannot build charts from {kind} sources")
        revision = artifact_revision(source)
        sha = revision.rpartition(":")[2]
        repo = gitsource.repo_path((source.get("spec") or {}).get("url", ""))
        path = posixpath.normpath(chart.lstrip("./"))
        chart_yaml = (gitsource.read_tree(repo, sha, path) or {}).get(f"{path}/Chart.yaml")
        if chart_yaml is None:
            raise Failed(
                "InvalidChartReference",
                f"invalid chart reference: path '{path}' not found in revision {revision}",
            )
        metadata = yaml.safe_load(chart_yaml) or {}
        version = str(metadata.get("version", "0.1.0"))
        if spec.get("reconcileStrategy") == "Revision":
            version = f"{version}+{sha[:12]}"
        return str(metadata.get("name", path.rpartition("/")[2])), version, True


def _artifact(key: ObjKey, revision: str, file: str) -> dict[str, Any]:
    kind, namespace, name = key
    path = f"{kind.lower()}/{namespace}/{name}/{file}"
    return {
        "revision": revision,
        "digest": "sha256:" + hashlib.sha256(f"{path}{revision}".encode()).hexdigest(),
        "lastUpdateTime": now_text(),
        "path": path,
        "url": f"{STORAGE}/{path}",
        "size": 1024,
    }


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


def _clone_error(ref: str, error: gitsource.GitSourceError) -> str:
    """go-git's words for a ref that is not there (NoMatchingRefSpecError), else the git error."""
    missing_ref = "unable to resolve reference" in str(error) and "repository not found" not in str(error)
    if ref.startswith(("refs/heads/", "refs/tags/")) and missing_ref:
        return f'couldn\'t find remote ref "{ref}"'
    return str(error)


def _oci_tag(ref: dict[str, Any]) -> str:
    if ref.get("tag"):
        return str(ref["tag"])
    if ref.get("semver"):
        return concrete_version(str(ref["semver"]))
    return "latest"


def concrete_version(constraint: str) -> str:
    """A version satisfying a simple constraint (`1.16.x`, `>=1.0.0`, `*`), as a repository index would offer."""
    cleaned = re.sub(r"^[^\d]*", "", constraint.split(",")[0].strip())
    parts = [p if p.isdigit() else "0" for p in cleaned.split(".")[:3] if p] or ["1"]
    parts += ["0"] * (3 - len(parts))
    return ".".join(parts)
