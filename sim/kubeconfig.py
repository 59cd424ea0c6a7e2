"""Writing a kubeconfig for a server, so that kubectl, the kubernetes client and fluxmon all find it."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    token: str = "",
    context: str = "fluxmon-sim",
    ca_file: Path | None = None,
) -> Path:
    """Write (atomically, 0600: it may hold a token) a kubeconfig with one cluster, user and context."""
    cluster: dict[str, object] = {"server": server}
    if ca_file is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_file.read_bytes()).decode()
    user: dict[str, object] = {"token": token} if token else {}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "flux-system"}}],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    temp.replace(path)
    return path
