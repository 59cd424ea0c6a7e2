"""Benchmark of `fluxmon assess` on a large input: does its memory stay near the input's size?

It writes about 60 MB of Flux objects as `kubectl get -o yaml` prints them (metadata with managedFields, spec,
status with conditions, inventories and Helm history) into a temporary directory, twice: as a multi-document YAML
(one `---` document per object) and as one `kind: List` (what `kubectl get -A -o yaml` prints). Then it runs the
real `fluxmon assess --output table` on each in a child process, and, side by side, the reader it had before it
streamed (the whole input read, each document parsed whole). It reports each child's own peak RSS (`ru_maxrss`),
CPU and wall time, against the target of issue #16: peak memory at most about twice the input.

Run: .venv/bin/python -m bench.assess [--megabytes 60] [--streaming-only] [--save]   (prints; asserts nothing)
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.results import Table, save
from fluxmon.core.objects import is_flux_body, parse_flux_object
from fluxmon.core.render import table
from fluxmon.core.verdict import Phase, verdict

DEFAULT_MEGABYTES = 60
TARGET_RATIO = 2.0
"""Issue #16: peak memory within about twice the input's size."""
MIB = 1024 * 1024
COMMIT = "7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170"
OLDER = "0f9e8d7c6b5a49382716a5b4c3d2e1f009182736"
TIME = "2026-10-02T09:14:03Z"
INVENTORY_ENTRIES = 12
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "lastTransitionTime": TIME,
        "message": message,
        "observedGeneration": 3,
        "reason": reason,
        "status": status,
        "type": type_,
    }


def _metadata(kind: str, name: str, namespace: str) -> dict[str, Any]:
    """Metadata as the API server returns it, with the managedFields that make real objects large."""
    controller = {"Kustomization": "kustomize-controller", "HelmRelease": "helm-controller"}.get(
        kind, "source-controller"
    )
    return {
        "annotations": {"reconcile.fluxcd.io/requestedAt": "2026-10-02T09:13:58.123456789Z"},
        "creationTimestamp": "2026-01-14T08:00:00Z",
        "finalizers": ["finalizers.fluxcd.io"],
        "generation": 3,
        "labels": {
            "kustomize.toolkit.fluxcd.io/name": "flux-system",
            "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            "app.kubernetes.io/part-of": "fleet",
        },
        "managedFields": [
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {
                        "f:labels": {
                            "f:kustomize.toolkit.fluxcd.io/name": {},
                            "f:kustomize.toolkit.fluxcd.io/namespace": {},
                        }
                    },
                    "f:spec": {f"f:{field}": {} for field in ("interval", "path", "prune", "sourceRef", "timeout")},
                },
                "manager": "kustomize-controller",
                "operation": "Apply",
                "time": TIME,
            },
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:finalizers": {".": {}, 'v:"finalizers.fluxcd.io"': {}}},
                },
                "manager": controller,
                "operation": "Update",
                "time": TIME,
            },
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:status": {
                        "f:conditions": {},
                        "f:inventory": {".": {}, "f:entries": {}},
                        "f:lastAppliedRevision": {},
                        "f:lastAttemptedRevision": {},
                        "f:lastHandledReconcileAt": {},
                        "f:observedGeneration": {},
                    }
                },
                "manager": controller,
                "operation": "Update",
                "subresource": "status",
                "time": TIME,
            },
        ],
        "name": name,
        "namespace": namespace,
        "resourceVersion": "48213377",
        "uid": "5b0f6c1e-8d3a-4f7e-9c2b-1a0e9d8c7b6a",
    }


def kustomization(name: str, *, revision: str, failed: bool) -> dict[str, Any]:
    applied = f"main@sha1:{revision}"
    conditions = [
        _condition("Ready", "True", "ReconciliationSucceeded", f"Applied revision: {applied}"),
        _condition("Healthy", "True", "Succeeded", "Health check passed in 2.1s"),
    ]
    if failed:
        conditions[0] = _condition(
            "Ready",
            "False",
            "BuildFailed",
            f"kustomize build failed: map[string]interface {{}}(nil): yaml: line 4 ({name})",
        )
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": _metadata("Kustomization", name, "flux-system"),
        "spec": {
            "force": False,
            "interval": "10m0s",
            "path": f"./apps/{name}",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
            "timeout": "5m0s",
        },
        "status": {
            "conditions": conditions,
            "inventory": {
                "entries": [{"id": f"{name}_{name}-{index}_apps_Deployment", "v": "v1"} for index in range(12)]
            },
            "lastAppliedRevision": applied,
            "lastAttemptedRevision": f"main@sha1:{COMMIT}",
            "lastHandledReconcileAt": "2026-10-02T09:13:58.123456789Z",
            "observedGeneration": 3,
        },
    }


def helm_release(name: str, *, revision: str) -> dict[str, Any]:
    version = f"1.4.2+{revision[:12]}"
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": _metadata("HelmRelease", name, "apps"),
        "spec": {
            "chart": {
                "spec": {
                    "chart": f"./charts/{name}",
                    "reconcileStrategy": "Revision",
                    "sourceRef": {"kind": "GitRepository", "name": "fleet", "namespace": "flux-system"},
                }
            },
            "install": {"remediation": {"retries": 3}},
            "interval": "10m",
            "upgrade": {"remediation": {"retries": 3}},
            "values": {"replicaCount": 2, "image": {"repository": f"ghcr.io/acme/{name}", "tag": "1.4.2"}},
        },
        "status": {
            "conditions": [
                _condition("Ready", "True", "UpgradeSucceeded", f"Helm upgrade succeeded for release apps/{name}.v7"),
                _condition(
                    "Released", "True", "UpgradeSucceeded", f"Helm upgrade succeeded for release apps/{name}.v7"
                ),
            ],
            "helmChart": f"flux-system/apps-{name}",
            "history": [
                {
                    "appVersion": "1.4.2",
                    "chartName": name,
                    "chartVersion": version,
                    "configDigest": "sha256:" + "ab" * 32,
                    "digest": "sha256:" + "cd" * 32,
                    "firstDeployed": TIME,
                    "lastDeployed": TIME,
                    "name": name,
                    "namespace": "apps",
                    "status": "deployed",
                    "version": 7,
                }
            ],
            "lastAttemptedReleaseAction": "upgrade",
            "lastAttemptedRevision": version,
            "lastHandledReconcileAt": "2026-10-02T09:13:58.123456789Z",
            "observedGeneration": 3,
        },
    }


def git_repository(name: str) -> dict[str, Any]:
    revision = f"main@sha1:{COMMIT}"
    stored = f"stored artifact for revision '{revision}'"
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": _metadata("GitRepository", name, "flux-system"),
        "spec": {
            "interval": "1m0s",
            "ref": {"branch": "main"},
            "timeout": "60s",
            "url": f"ssh://git@github.com/acme/{name}",
        },
        "status": {
            "artifact": {
                "digest": "sha256:" + "ef" * 32,
                "lastUpdateTime": TIME,
                "path": f"gitrepository/flux-system/{name}/{COMMIT}.tar.gz",
                "revision": revision,
                "size": 48213,
                "url": f"http://source-controller.flux-system.svc.cluster.local./gitrepository/{name}.tar.gz",
            },
            "conditions": [
                _condition("Ready", "True", "Succeeded", stored),
                _condition("ArtifactInStorage", "True", "Succeeded", stored),
            ],
            "observedGeneration": 3,
        },
    }


NAME_SLOT = "NNNNNN"
"""Where each object's number goes in its kind's template: dumping YAML is slower than reading it, so each kind is
dumped once and copied."""


def variant(index: int) -> dict[str, Any]:
    """Object `index` with its name left as a slot: 1 in 10 a source, 1 in 10 a release, the rest Kustomizations;
    most have applied the commit, some an older one, a few failed."""
    name = f"app-{NAME_SLOT}"
    if index % 10 == 0:
        return git_repository(name)
    if index % 10 == 5:
        return helm_release(name, revision=COMMIT if index % 20 else OLDER)
    return kustomization(name, revision=COMMIT if index % 7 else OLDER, failed=index % 97 == 0)


def write_inputs(directory: Path, *, megabytes: float) -> dict[str, Path]:
    """The two layouts of about `megabytes` each; returns them by name."""
    templates: dict[str, tuple[str, str]] = {}  # a variant's YAML: as a document, and as an item of a List

    def texts(index: int) -> tuple[str, str]:
        body = variant(index)
        key = repr(body)
        if key not in templates:
            templates[key] = (yaml.dump(body, Dumper=_DUMPER), yaml.dump([body], Dumper=_DUMPER))
        return templates[key]

    paths = {"multi-document YAML": directory / "documents.yaml", "kind: List": directory / "list.yaml"}
    limit = megabytes * MIB
    with paths["multi-document YAML"].open("w", encoding="utf-8") as documents:
        index = written = 0
        while written < limit:
            text = "---\n" + texts(index)[0].replace(NAME_SLOT, f"{index:06d}")
            documents.write(text)
            written += len(text)
            index += 1
    with paths["kind: List"].open("w", encoding="utf-8") as listing:
        # As kubectl prints it: keys sorted, so `items` comes before `kind`.
        listing.write("apiVersion: v1\nitems:\n")
        index = written = 0
        while written < limit:
            text = texts(index)[1].replace(NAME_SLOT, f"{index:06d}")
            listing.write(text)
            written += len(text)
            index += 1
        listing.write('kind: List\nmetadata:\n  resourceVersion: ""\n')
    return paths


@dataclass(frozen=True, kw_only=True)
class Run:
    input_bytes: int
    rss_bytes: int
    cpu_seconds: float
    wall_seconds: float
    status: int


READERS = {
    "streaming (fluxmon assess)": ["-m", "fluxmon", "assess", "--commit", COMMIT, "--output", "table"],
    "read whole (before)": ["-m", "bench.assess", "--read-whole"],
}


def run_child(args: list[str], path: Path) -> Run:
    """`python ARGS FILE` in a child process; its own peak RSS and CPU, from wait4.

    A child's ru_maxrss starts at its parent's RSS at the fork (Linux keeps it across exec): this parent stays near
    17 MiB, far under any child's figure, so what wait4 says is the child's own peak.
    """
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, *args, str(path)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        input_bytes=path.stat().st_size,
        rss_bytes=usage.ru_maxrss * 1024,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        wall_seconds=wall,
        status=child.returncode,
    )


def read_whole(path: Path) -> int:
    """What `fluxmon assess` did before it streamed (up to 9a6daa7): the whole input read and decoded, each YAML
    document parsed whole by libyaml (a List with all its items), and every verdict kept with its object."""
    text = path.read_bytes().decode("utf-8")
    rows = []
    for document in yaml.load_all(text, Loader=_LOADER):
        bodies = (document.get("items") or []) if document.get("kind") == "List" else [document]
        for body in bodies:
            if is_flux_body(body):
                obj = parse_flux_object(body)
                rows.append((obj, verdict(obj, COMMIT)))
    sys.stdout.write(table(rows))
    return 1 if any(result.phase is Phase.FAILED for _, result in rows) else 0  # as fluxmon assess exits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--megabytes", type=float, default=DEFAULT_MEGABYTES, help="size of each input")
    parser.add_argument("--streaming-only", action="store_true", help="skip the reader from before (slow on a List)")
    parser.add_argument("--save", action="store_true", help="write bench/results/assess.json")
    parser.add_argument("--read-whole", type=Path, metavar="FILE", help=argparse.SUPPRESS)  # the child of a run
    args = parser.parse_args()
    if args.read_whole:
        importlib.import_module("fluxmon.cli")  # what `fluxmon assess` imports, so that only the reading differs
        sys.exit(read_whole(args.read_whole))
    readers = {name: argv for name, argv in READERS.items() if not (args.streaming_only and "before" in name)}
    rows = []
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fluxmon-bench-assess-") as temp:
        empty = Path(temp) / "empty.yaml"
        empty.write_text("")
        imports = run_child(READERS["streaming (fluxmon assess)"], empty)
        print(f"fluxmon assess on an empty input: peak RSS {imports.rss_bytes / MIB:.1f} MiB (Python and its imports)")
        inputs = write_inputs(Path(temp), megabytes=args.megabytes)
        for layout, path in inputs.items():
            for reader, argv in readers.items():
                run = run_child(argv, path)
                ratio = run.rss_bytes / run.input_bytes
                print(
                    f"{layout}, {reader}: {run.input_bytes / MIB:.1f} MiB in, peak RSS {run.rss_bytes / MIB:.1f} MiB "
                    f"({ratio:.2f}x the input; target {TARGET_RATIO:.0f}x), CPU {run.cpu_seconds:.1f} s, "
                    f"wall {run.wall_seconds:.1f} s, exit {run.status}"
                )
                rows.append(
                    (
                        layout,
                        reader,
                        f"{run.input_bytes / MIB:.1f} MiB",
                        f"{run.rss_bytes / MIB:.1f} MiB ({ratio:.2f}x)",
                        f"{run.cpu_seconds:.1f} s",
                        f"{run.wall_seconds:.1f} s",
                    )
                )
                data[f"{layout}, {reader}"] = {
                    "input_bytes": run.input_bytes,
                    "rss_bytes": run.rss_bytes,
                    "cpu_seconds": run.cpu_seconds,
                    "wall_seconds": run.wall_seconds,
                }
    if args.save:
        results = Table(
            name="assess",
            columns=("input", "reader", "size", "peak RSS (x input)", "CPU", "wall"),
            rows=tuple(rows),
            notes=(
                f"target (issue #16): peak RSS at most about {TARGET_RATIO:.0f}x the input",
                f"fluxmon assess on an empty input: {imports.rss_bytes / MIB:.1f} MiB (Python and its imports)",
            ),
            data={"runs": data, "target_ratio": TARGET_RATIO, "imports_rss_bytes": imports.rss_bytes},
        )
        print(f"saved {save(results)}")


if __name__ == "__main__":
    main()
