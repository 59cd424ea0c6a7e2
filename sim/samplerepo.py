"""`fluxmon sim init-repo`: a small but realistic GitOps fleet repository, and a bare remote for it.

Layout for one cluster (as `flux bootstrap` and the Flux example repos arrange it):
    clusters/local/infrastructure.yaml   Kustomization infrastructure (wait: true)
    clusters/local/apps.yaml             Kustomization apps, dependsOn infrastructure (wait: true)
    infrastructure/                      namespaces and a HelmRepository
    apps/                                a Deployment and Service, a HelmRelease from the HelmRepository, and a
                                         HelmRelease whose chart is built from this repo (reconcileStrategy: Revision)
    charts/podinfo/                      that chart

Layout for several clusters (`clusters=("staging", "production")`), as fluxcd/flux2-kustomize-helm-example lays
out its staging and production (its README.md "Repository structure" at 011977a5, clusters/staging/apps.yaml at
04f955ca and clusters/production/apps.yaml at 25c85ac1): one `clusters/<name>/` per cluster, each `apps`
Kustomization on its own overlay `./apps/<name>`, the overlays sharing `apps/base/`:
    clusters/<name>/infrastructure.yaml  Kustomization infrastructure on ./infrastructure (shared)
    clusters/<name>/apps.yaml            Kustomization apps on ./apps/<name>, dependsOn infrastructure
    apps/base/                           what every cluster runs (the one-cluster `apps/`)
    apps/<name>/                         the overlay: apps/base, plus this cluster's own settings ConfigMap
A change under apps/base/ lands on every cluster; a change under apps/<name>/ on that cluster alone.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

CLUSTER_PATH = "clusters/local"

README = """# Sample fleet for Flux Push Monitor

This repository is followed by the simulated cluster of `fluxmon sim` and `fluxmon demo`. The flux-system
Kustomization applies `clusters/local/`. It holds two Kustomizations: `infrastructure`, and `apps`, which
`dependsOn` infrastructure. Both wait for their workloads to become healthy.

## Break things on purpose

Each of these makes Flux fail for a different reason. Commit the change, push it, and watch fluxmon report it.
Revert the change and push again to see the fix deployed.

| change | what Flux reports |
|---|---|
| Break the YAML in `apps/web.yaml` (say, indent `replicas:` wrongly) | `apps` fails: `BuildFailed` |
| Point `spec.path` in `clusters/local/apps.yaml` at a folder that does not exist | `apps` fails: `ArtifactFailed` |
| Annotate the Deployment in `apps/web.yaml`: `sim.fluxmon.dev/simulate: unhealthy` | `apps`: `HealthCheckFailed` |
| Annotate the HelmRelease in `apps/redis.yaml`: `sim.fluxmon.dev/simulate: fail` | `redis`: `UpgradeFailed` |
| In `apps/redis.yaml`, take values `valuesFrom` a ConfigMap that does not exist | `redis`: `ValuesError` |
| Add a resource of a kind the cluster does not know | `ReconciliationFailed` |

A failed upgrade of `redis` is rolled back and retried twice (its `upgrade.remediation.retries`), then it is
`Stalled` with `RetriesExceeded`. The `sim.fluxmon.dev/simulate` annotations mean something only to the
simulator. On a real cluster they are plain annotations.
"""

FILES: dict[str, str] = {
    "README.md": README,
    f"{CLUSTER_PATH}/infrastructure.yaml": """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: infrastructure
  namespace: flux-system
spec:
  interval: 10m0s
  path: ./infrastructure
  prune: true
  wait: true
  timeout: 2m0s
  sourceRef:
    kind: GitRepository
    name: flux-system
""",
    f"{CLUSTER_PATH}/apps.yaml": """\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: apps
  namespace: flux-system
spec:
  interval: 10m0s
  dependsOn:
    - name: infrastructure
  path: ./apps
  prune: true
  wait: true
  timeout: 2m0s
  sourceRef:
    kind: GitRepository
    name: flux-system
""",
    "infrastructure/kustomization.yaml": """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - namespaces.yaml
  - helmrepository.yaml
""",
    "infrastructure/namespaces.yaml": """\
apiVersion: v1
kind: Namespace
metadata:
  name: apps
---
apiVersion: v1
kind: Namespace
metadata:
  name: data
""",
    "infrastructure/helmrepository.yaml": """\
apiVersion: source.toolkit.fluxcd.io/v1
kind: HelmRepository
metadata:
  name: bitnami
  namespace: flux-system
spec:
  interval: 1h0m0s
  url: https://charts.bitnami.com/bitnami
""",
    "apps/kustomization.yaml": """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - web.yaml
  - redis.yaml
  - podinfo.yaml
""",
    "apps/web.yaml": """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: apps
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: ghcr.io/stefanprodan/podinfo:6.5.0
          ports:
            - containerPort: 9898
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: apps
spec:
  selector:
    app: web
  ports:
    - port: 80
      targetPort: 9898
""",
    "apps/redis.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: redis
  namespace: data
spec:
  interval: 30m
  chart:
    spec:
      chart: redis
      version: "20.x"
      sourceRef:
        kind: HelmRepository
        name: bitnami
        namespace: flux-system
  install:
    remediation:
      retries: 2
  upgrade:
    remediation:
      retries: 2
  values:
    architecture: standalone
""",
    "apps/podinfo.yaml": """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: podinfo
  namespace: apps
spec:
  interval: 30m
  chart:
    spec:
      chart: ./charts/podinfo
      reconcileStrategy: Revision
      sourceRef:
        kind: GitRepository
        name: flux-system
        namespace: flux-system
  values:
    replicaCount: 1
""",
    "charts/podinfo/Chart.yaml": """\
apiVersion: v2
name: podinfo
description: The podinfo chart, built from this repository at each commit
version: 6.0.3
appVersion: 6.5.0
""",
    "charts/podinfo/values.yaml": "replicaCount: 1\n",
}


CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
"""A cluster's name is a kubeconfig context and a folder of the repo: a DNS label (RFC 1123), as Kubernetes names."""

FLEET_README = """# Sample fleet for Flux Push Monitor: {count} clusters

This repository is followed by {count} simulated clusters of `fluxmon sim --cluster ...` and `fluxmon demo`:
{clusters}. Each runs its own Flux, whose flux-system Kustomization applies `clusters/<cluster>/`. That folder
holds two Kustomizations: `infrastructure` on `./infrastructure`, and `apps` on the cluster's own overlay
`./apps/<cluster>`, which `dependsOn` infrastructure. Every overlay takes `apps/base/` and adds the cluster's
own `web-settings` ConfigMap. (The layout of fluxcd/flux2-kustomize-helm-example.)

## Break things on purpose

| change | what Flux reports |
|---|---|
| Break the YAML in `apps/base/web.yaml` | `apps` fails on every cluster: `BuildFailed` |
| Break the YAML in `apps/{last}/web-settings.yaml` | `apps` fails on {last} only; the others deploy |
| Annotate the Deployment in `apps/base/web.yaml`: `sim.fluxmon.dev/simulate: unhealthy` | `apps`: `HealthCheckFailed` |
| Annotate the HelmRelease in `apps/base/redis.yaml`: `sim.fluxmon.dev/simulate: fail` | `redis`: `UpgradeFailed` |

Revert the change and push again to see the fix deployed everywhere.
"""


OVERLAY_KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
  - web-settings.yaml
"""

WEB_SETTINGS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-settings
  namespace: apps
data:
  environment: {cluster}
  logLevel: info
"""


def check_cluster_names(names: Sequence[str]) -> None:
    """Raise ValueError, saying what to do, for a name that cannot be a context and a folder, or that repeats."""
    for name in names:
        if not CLUSTER_NAME.fullmatch(name) or name == "base":
            raise ValueError(
                f"cluster name {name!r}: use lower-case letters, digits and '-' (like staging), and not 'base'"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"cluster names repeat: {', '.join(names)}")


def cluster_path(name: str) -> str:
    """The folder a cluster's flux-system Kustomization applies (`flux bootstrap --path=clusters/<name>`)."""
    return f"clusters/{name}"


def fleet_files(clusters: Sequence[str] = ()) -> dict[str, str]:
    """The sample repository's files: the one-cluster layout, or with `clusters`, one path and overlay per cluster."""
    if not clusters:
        return dict(FILES)
    files = {name: text for name, text in FILES.items() if not name.startswith(("apps/", "clusters/", "README"))}
    files["README.md"] = FLEET_README.format(count=len(clusters), clusters=", ".join(clusters), last=clusters[-1])
    for name, text in FILES.items():
        if name.startswith("apps/"):
            files[f"apps/base/{name.removeprefix('apps/')}"] = text
    for cluster in clusters:
        files[f"{cluster_path(cluster)}/infrastructure.yaml"] = FILES[f"{CLUSTER_PATH}/infrastructure.yaml"]
        files[f"{cluster_path(cluster)}/apps.yaml"] = FILES[f"{CLUSTER_PATH}/apps.yaml"].replace(
            "path: ./apps\n", f"path: ./apps/{cluster}\n"
        )
        files[f"apps/{cluster}/kustomization.yaml"] = OVERLAY_KUSTOMIZATION
        files[f"apps/{cluster}/web-settings.yaml"] = WEB_SETTINGS.format(cluster=cluster)
    return files


def init_repo(directory: Path, *, remote: Path | None = None, clusters: Sequence[str] = ()) -> Path:
    """Create the sample repo in `directory` (a work tree on `main`, one commit) and a bare `remote` it pushes to.

    `clusters`: names of the clusters that follow it, each at `clusters/<name>` (see the module's docstring);
    none gives the one-cluster layout at `clusters/local`. Returns the bare remote, which the clusters follow.
    """
    check_cluster_names(clusters)
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty")
    remote = remote or directory.with_name(f"{directory.name}.git")
    for name, content in fleet_files(clusters).items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    _git(directory.parent, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(directory, "init", "-q", "-b", "main")
    _git(directory, "add", "-A")
    _git(
        directory,
        "-c",
        "user.name=fluxmon",
        "-c",
        "user.email=fluxmon@localhost",
        "commit",
        "-q",
        "-m",
        "Initial fleet: infrastructure, apps, podinfo chart",
    )
    _git(directory, "remote", "add", "origin", str(remote.resolve()))
    _git(directory, "push", "-q", "-u", "origin", "main")
    return remote


def _git(cwd: Path, *args: str) -> None:
    cwd.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)
