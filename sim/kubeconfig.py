"""Writing a kubeconfig for a server, so that kubectl, the kubernetes client and fluxmon all find it."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True, kw_only=True, slots=True)
class KubeconfigContext:
    """One context of a kubeconfig: its cluster and user entries take the context's name too.

    Distinct names per cluster keep several files apart when kubectl merges them (`KUBECONFIG=a:b`): the first
    file that names a cluster, user or context wins, so two files that both said `fluxmon-sim` would collide.
    """

    name: str
    server: str
    token: str = ""
    ca_file: Path | None = None


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    token: str = "",
    context: str = "fluxmon-sim",
    ca_file: Path | None = None,
) -> Path:
    """Write (atomically, 0600: it may hold a token) a kubeconfig with one cluster, user and context."""
    return write_contexts(path, [KubeconfigContext(name=context, server=server, token=token, ca_file=ca_file)])


def write_contexts(path: Path, contexts: Sequence[KubeconfigContext]) -> Path:
    """Write (atomically, 0600) a kubeconfig with one cluster, user and context per entry; the first is current."""
    if not contexts:
        raise ValueError("a kubeconfig needs at least one context")
    clusters, users, entries = [], [], []
    for context in contexts:
        cluster: dict[str, object] = {"server": context.server}
        if context.ca_file is not None:
            cluster["certificate-authority-data"] = base64.b64encode(context.ca_file.read_bytes()).decode()
        user: dict[str, object] = {"token": context.token} if context.token else {}
        clusters.append({"name": context.name, "cluster": cluster})
        users.append({"name": context.name, "user": user})
        entries.append(
            {
                "name": context.name,
                "context": {"cluster": context.name, "user": context.name, "namespace": "flux-system"},
            }
        )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": entries,
        "current-context": contexts[0].name,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    temp.replace(path)
    return path
