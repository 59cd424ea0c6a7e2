"""Which clusters to follow: the kubeconfig files read and merged exactly as kubectl merges them, and the targets
(context, kubeconfig) that the flags and the config name.

Why our own merge: the kubernetes client's KubeConfigMerger takes `current-context` from the LAST file of
$KUBECONFIG and fails on an empty file, where kubectl takes it from the first and skips the file; and before this
module fluxmon read only the first file, so a context defined in the second was "unknown". So the files are read
and merged here, and the merged document goes to the client as a dict (core/kube.py).

The rules, from client-go `tools/clientcmd/loader.go` (kubernetes/kubernetes, staging/src/k8s.io/client-go,
commit 03ced770639fac6c1ab10764dfe290c13ebe5517: `NewDefaultClientConfigLoadingRules`, `ClientConfigLoadingRules.Load`,
`ResolveLocalPaths`, `GetAuthInfoFileReferences`) and the kubectl docs "Organizing Cluster Access Using kubeconfig
Files", section "Merging kubeconfig files" (kubernetes/website,
content/en/docs/concepts/configuration/organize-cluster-access-kubeconfig.md):
- `--kubeconfig FILE`: that file alone, no merging; a missing one is an error. kubectl's flag takes one file, and
  so does ours: `--kubeconfig a:b` names a file called `a:b` (the error then says to use KUBECONFIG to merge).
- else $KUBECONFIG, split on `:` (os.pathsep), empty names ignored, a name given twice read once;
- else ~/.kube/config (from $HOME), no merging.
- A missing file is skipped; an empty one is an empty config; one that cannot be read or parsed is an error.
- Clusters, users and contexts: the FIRST file to define a name wins, whole: nothing of a later file's entry of
  the same name is kept, even keys the first one lacks. Within one file, a name given twice is an error
  (`api/v1/conversion.go`: "duplicate name ... in list").
- `current-context`: the first file that sets it wins.
- Relative file references are resolved against the folder of the file that defines the entry:
  `certificate-authority` of a cluster; `client-certificate`, `client-key`, `tokenFile` of a user, and its
  `exec.command` only when it holds a `/` (a bare name is looked up on PATH).
One addition: a leading `~` in a name in $KUBECONFIG or --kubeconfig is expanded, as fluxmon always did.

Nothing here writes a file: credentials stay where the user keeps them, and a token file is read into memory only
(Kubeconfig.client_document).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fluxmon.core.cluster import ClusterTarget, KubeconfigError
from fluxmon.core.config import Config
from fluxmon.core.errors import InputError

SECTIONS = {"clusters": "cluster", "users": "user", "contexts": "context"}
"""The named lists of a kubeconfig, with the key that holds each entry's body."""
CLUSTER_FILE_KEYS = ("certificate-authority",)
USER_FILE_KEYS = ("client-certificate", "client-key", "tokenFile")


@dataclass(frozen=True, kw_only=True, slots=True)
class Kubeconfig:
    """The merged kubeconfig: what kubectl would see (`kubectl config view --raw`), and which files made it."""

    read: tuple[Path, ...]
    """The files read, in order (empty ones included)."""
    missing: tuple[Path, ...] = ()
    """The files named but not there: skipped, as kubectl skips them."""
    document: dict[str, Any] = field(default_factory=dict, hash=False)
    """The merged config, relative file references resolved: ready for the kubernetes client."""

    @property
    def contexts(self) -> tuple[str, ...]:
        """Every context name, in file order."""
        return tuple(entry["name"] for entry in self.document.get("contexts", ()))

    @property
    def current_context(self) -> str:
        return str(self.document.get("current-context") or "")

    @property
    def empty(self) -> bool:
        """Every file read was empty (or only comments)."""
        return (
            bool(self.read) and not any(self.document.get(section) for section in SECTIONS) and not self.current_context
        )

    @property
    def description(self) -> str:
        """The files, as a person would name them: one path, or the merged list as KUBECONFIG spells it."""
        return os.pathsep.join(str(path) for path in self.read or self.missing)

    def missing_error(self, *, explicit: str | None = None) -> KubeconfigError:
        """No file to read at all."""
        where = ", ".join(str(path) for path in self.missing) or "(KUBECONFIG names no file)"
        hint = ""
        if explicit and os.pathsep in explicit:
            hint = f" (--kubeconfig takes one file, as kubectl's does; to merge several, set KUBECONFIG={explicit})"
        return KubeconfigError(
            f"no kubeconfig at {where}{hint}; point --kubeconfig or KUBECONFIG at one, or run `fluxmon demo` to "
            f"try fluxmon on a simulated cluster"
        )

    def context_to_use(self, wanted: str | None) -> str:
        """`wanted`, else the current context, checked to exist and to name a cluster; raises KubeconfigError."""
        if self.empty:
            raise KubeconfigError(f"{self.description} is not a valid kubeconfig: it is empty")
        available = f"(its contexts: {', '.join(self.contexts) or 'none'}){self._skipped()}"
        chosen = wanted or self.current_context
        if not chosen:
            raise KubeconfigError(f"{self.description} sets no current-context: name one with --context {available}")
        entry = self._entry("contexts", chosen)
        if not entry:
            raise KubeconfigError(f"{self.description} has no context {chosen!r} {available}")
        body = entry.get("context")
        if not isinstance(body, Mapping) or not isinstance(body.get("cluster"), str) or not body["cluster"]:
            raise KubeconfigError(f"{self.description} is not a valid kubeconfig: context {chosen!r} names no cluster")
        cluster = body["cluster"]
        if not self._entry("clusters", cluster):
            raise KubeconfigError(
                f"{self.description} has no cluster {cluster!r}, which context {chosen!r} names{self._skipped()}"
            )
        return chosen

    def client_document(self, context: str) -> dict[str, Any]:
        """What the kubernetes client needs for one context: that context, its cluster and its user, with the
        user's token file read in (in memory only).

        client-go trims a token file's whitespace (transport/token_source.go, fileTokenSource.Token) and lets the
        file win over an inline token (rest.Config.BearerTokenFile); the python client sends the file raw, so one
        written by `echo $TOKEN > token` would put a newline in every request's header."""
        body = self._entry("contexts", context).get("context") or {}
        cluster = self._entry("clusters", body.get("cluster"))
        user = self._entry("users", body.get("user"))
        where = f"{self.description}, context {context!r}"
        user_body = dict(user.get("user") or {})
        token_file = user_body.pop("tokenFile", None)
        if isinstance(token_file, str) and token_file:
            try:
                user_body["token"] = Path(token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or "not UTF-8 text"
                raise KubeconfigError(f"{where}: its token file {token_file} cannot be read: {reason}") from None
            if not user_body["token"]:
                raise KubeconfigError(f"{where}: its token file {token_file} is empty")
        token = user_body.get("token")
        if isinstance(token, str) and any(character in token for character in "\r\n\0"):
            raise KubeconfigError(f"{where}: its user's token holds a line break; fix the token")
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster] if cluster else [],
            "users": [{**user, "user": user_body}] if user else [],
            "contexts": [self._entry("contexts", context)],
            "current-context": context,
        }

    def _entry(self, section: str, name: Any) -> dict[str, Any]:
        """The merged entry of that name ({} when there is none)."""
        return next((entry for entry in self.document.get(section, ()) if entry["name"] == name), {})

    def _skipped(self) -> str:
        return f"; not found, so skipped: {', '.join(map(str, self.missing))}" if self.missing else ""


def kubeconfig_files(explicit: str | None = None, environ: Mapping[str, str] = os.environ) -> tuple[Path, ...]:
    """The files to read, in precedence order: `--kubeconfig`, else $KUBECONFIG's list, else ~/.kube/config."""
    if explicit:
        return (Path(explicit).expanduser(),)
    listed = environ.get("KUBECONFIG", "")
    if listed:
        names = [name for name in listed.split(os.pathsep) if name]
        return tuple(Path(name).expanduser() for name in dict.fromkeys(names))
    return (Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config",)


def load_kubeconfig(explicit: str | None = None, *, environ: Mapping[str, str] = os.environ) -> Kubeconfig:
    """Read and merge the kubeconfig files; raises KubeconfigError (naming the file) for one that cannot be read
    or parsed. No file at all is not an error here (`read` is empty): the caller decides (in-cluster, or say so)."""
    read: list[Path] = []
    missing: list[Path] = []
    merged: dict[str, dict[str, dict[str, Any]]] = {section: {} for section in SECTIONS}
    current = ""
    for path in kubeconfig_files(explicit, environ):
        document = _read(path)
        if document is None:
            missing.append(path)
            continue
        read.append(path)
        base = path.parent.absolute()
        for section, body_key in SECTIONS.items():
            for name, entry in _named_entries(document, section, body_key, path=path).items():
                if name not in merged[section]:  # the first file to define a name wins, the entry whole
                    merged[section][name] = _resolved(entry, section=section, body_key=body_key, base=base)
        file_current = document.get("current-context")
        if file_current is not None and not isinstance(file_current, str):
            raise KubeconfigError(f"{path} is not a valid kubeconfig: current-context is not a string")
        current = current or file_current or ""
    merged_document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        **{section: list(entries.values()) for section, entries in merged.items()},
        "current-context": current,
        "preferences": {},
    }
    return Kubeconfig(read=tuple(read), missing=tuple(missing), document=merged_document)


def kube_contexts(kubeconfig: str | None, *, environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """Every context of the merged kubeconfig, in file order (what `kubectl config get-contexts -o name` lists)."""
    return _existing(kubeconfig, environ).contexts


def current_context(kubeconfig: str | None, *, environ: Mapping[str, str] = os.environ) -> str:
    """The merged kubeconfig's current context ("" when no file sets one)."""
    return _existing(kubeconfig, environ).current_context


def resolve_targets(
    *,
    flag_contexts: Sequence[str],
    all_contexts: bool,
    kubeconfig: str | None,
    config: Config,
    environ: Mapping[str, str] = os.environ,
) -> tuple[ClusterTarget, ...]:
    """The clusters to follow a push on, first rule that applies:
    1. `--all-contexts`: every context of the merged kubeconfig (`--kubeconfig`, else KUBECONFIG), in file order;
    2. `--context` (repeatable): those contexts;
    3. the config's `contexts`, else its `context`;
    4. the current context alone: one `ClusterTarget()`, as before there were several.
    A named context is looked up in `--kubeconfig` when given, else in the file the config's [kubeconfigs] names
    for it, else in the merged kubeconfig. Duplicates are dropped, the order kept. Whether each context exists is
    checked when its cluster connects, so one bad name never stops the others."""
    if all_contexts and flag_contexts:
        raise InputError("--all-contexts already takes every context: drop --context, or drop --all-contexts")
    if all_contexts:
        loaded = _existing(kubeconfig, environ)
        if not loaded.contexts:
            raise KubeconfigError(f"--all-contexts: {loaded.description} has no contexts")
        return tuple(ClusterTarget(context=name, kubeconfig=kubeconfig) for name in loaded.contexts)
    names = tuple(flag_contexts) or config.contexts or ((config.context,) if config.context else ())
    if not names:
        return (ClusterTarget(kubeconfig=kubeconfig),)
    targets = (ClusterTarget(context=name, kubeconfig=kubeconfig or config.kubeconfig_for(name)) for name in names)
    return tuple(dict.fromkeys(targets))


def error_line(exc: BaseException) -> str:
    """An exception as one short line (YAML errors span several, with excerpts of the file)."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None)
    if mark is not None and problem:  # a YAML error: where, and what, without the excerpt of the file
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def _existing(kubeconfig: str | None, environ: Mapping[str, str]) -> Kubeconfig:
    loaded = load_kubeconfig(kubeconfig, environ=environ)
    if not loaded.read:
        raise loaded.missing_error(explicit=kubeconfig)
    return loaded


def _read(path: Path) -> dict[str, Any] | None:
    """One file's document ({} when empty), or None when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise KubeconfigError(f"{path} is not a valid kubeconfig: it is a folder") from None
    except OSError as exc:
        raise KubeconfigError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise KubeconfigError(f"{path} is not a valid kubeconfig: it is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"{path} is not a valid kubeconfig: {error_line(exc)}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise KubeconfigError(
            f"{path} is not a valid kubeconfig: expected a mapping at the top level, not a {type(document).__name__}"
        )
    return document


def _named_entries(document: Mapping[str, Any], section: str, body_key: str, *, path: Path) -> dict[str, Any]:
    """A section's entries by name, in file order; entries without a name cannot be chosen and are left out."""
    entries = document.get(section)
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise KubeconfigError(f"{path} is not a valid kubeconfig: {section} is not a list")
    named: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise KubeconfigError(f"{path} is not a valid kubeconfig: an entry of {section} is not a mapping")
        name = entry.get("name")
        body = entry.get(body_key)
        if name is None or name == "":
            continue
        if not isinstance(name, str):
            raise KubeconfigError(f"{path} is not a valid kubeconfig: a name in {section} is not a string: {name!r}")
        if body is not None and not isinstance(body, dict):
            raise KubeconfigError(f"{path} is not a valid kubeconfig: {section} {name!r}: {body_key} is not a mapping")
        if name in named:
            raise KubeconfigError(f"{path} is not a valid kubeconfig: two {section} are named {name!r}")
        named[name] = entry
    return named


def _resolved(entry: Mapping[str, Any], *, section: str, body_key: str, base: Path) -> dict[str, Any]:
    """A copy of the entry with its relative file references made absolute against `base` (its file's folder)."""
    if entry.get(body_key) is None:
        return dict(entry)
    body = dict(entry[body_key])
    keys = CLUSTER_FILE_KEYS if section == "clusters" else USER_FILE_KEYS if section == "users" else ()
    for key in keys:
        if key in body:
            body[key] = _absolute(body[key], base)
    exec_config = body.get("exec")
    if section == "users" and isinstance(exec_config, dict):
        command = exec_config.get("command")
        if isinstance(command, str) and "/" in command:  # a bare name is looked up on PATH, as kubectl does
            body["exec"] = {**exec_config, "command": _absolute(command, base)}
    return {**entry, body_key: body}


def _absolute(reference: Any, base: Path) -> Any:
    if not isinstance(reference, str) or not reference or Path(reference).is_absolute():
        return reference
    return os.path.normpath(base / reference)
