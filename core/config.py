"""Settings: built-in defaults, the user's config.toml, and per-repo overrides, merged in that order.

Precedence, lowest first:
  1. defaults (below);
  2. the user's `$XDG_CONFIG_HOME/fluxmon/config.toml`;
  3. the repo's `.kiro/hooks/flux-reconciliation-monitor.yaml` (the seed design's file: `enabled`,
     `config.timeout`, `config.verbosity`, `config.monitor_types`);
  4. the repo's `.fluxmon.toml` (our own file, same keys as config.toml).
A file that is invalid is reported (file and key) and skipped as a whole, so a typo never half-applies.

Which clusters: `contexts = ["dev", "prod"]` follows each push on those kubeconfig contexts; `context = "dev"` is
the one-cluster spelling of the same setting. They are one setting: a file that sets either replaces what a
lower file set for both (a repo's `context = "dev"` narrows the user's `contexts` to dev), and a file that sets
both is invalid. `[kubeconfigs]` (`prod = "~/.kube/prod.yaml"`) names the kubeconfig file a context lives in when
it is not in the usual one; only the user's own config.toml may set it, since a kubeconfig can run commands
(exec credential plugins) and a cloned repository must not choose them.

How much history is kept: `history_limit` (pushes, default 5000) and `history_max_age` (a duration, default "180d";
`d` for days is accepted wherever a duration is).

The tray reads the user's file again whenever it changes (`file_stamp`, `reload_user_config`). A file that turns
invalid then leaves the settings in force as they were, and says why, rather than falling back to the defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from fluxmon.core.errors import ConfigError
from fluxmon.core.objects import FLUX_KINDS
from fluxmon.core.paths import user_config_path

SEED_REPO_CONFIG = Path(".kiro/hooks/flux-reconciliation-monitor.yaml")
REPO_CONFIG = Path(".fluxmon.toml")
# The defaults, here and nowhere else: every front end and every session starts from these.
DEFAULT_MONITOR_TYPES = ("GitRepository", "OCIRepository", "Kustomization", "HelmRelease", "HelmChart")
"""The Flux kinds the informer follows: the sources, what applies them, and the HelmChart a chartRef names."""
DEFAULT_TIMEOUT_SECONDS = 300.0
"""How long a session follows a push before it times out (flux reconcile waits 5 minutes too)."""
VERBOSITIES = ("minimal", "normal", "verbose")
DEFAULT_VERBOSITY = "normal"
NOTIFY_OUTCOMES = ("succeeded", "failed", "timed-out")
"""The final outcomes a user acts on, notified by default (config `notify_on`)."""
MAX_CONFIG_BYTES = 256 * 1024
DEFAULT_HISTORY_LIMIT = 5000
"""How many pushes the history keeps (config `history_limit`): a year of a busy developer's pushes, ~15 MB."""
DEFAULT_HISTORY_MAX_AGE = 180 * 86400.0
"""How long the history keeps a push (config `history_max_age`, a duration such as "90d"): two quarters."""

_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Retention:
    """How much history is kept: at most `limit` pushes, none older than `max_age` seconds (core.store trims)."""

    limit: int = DEFAULT_HISTORY_LIMIT
    max_age: float = DEFAULT_HISTORY_MAX_AGE


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """The effective settings for one push (or for the app, without repo overrides)."""

    enabled: bool = True
    context: str = ""
    """kubeconfig context; empty means the kubeconfig's current context (unless `contexts` names some)."""
    contexts: tuple[str, ...] = ()
    """kubeconfig contexts to follow each push on; empty means `context` alone."""
    kubeconfigs: tuple[tuple[str, str], ...] = ()
    """(context, kubeconfig file) pairs: the file a context is read from when it is not in the usual kubeconfig."""
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    verbosity: str = DEFAULT_VERBOSITY
    monitor_types: tuple[str, ...] = DEFAULT_MONITOR_TYPES
    reconcile: bool = True
    """Annotate the source (and Kustomizations) after a push, so Flux fetches now, not at its next interval."""
    notify_on: tuple[str, ...] = NOTIFY_OUTCOMES
    ignore_remotes: tuple[str, ...] = ()
    """Glob patterns over redacted remote URLs (`*github.com/acme/scratch*`) whose pushes are ignored."""
    ignore_branches: tuple[str, ...] = ()
    """Glob patterns over branch names (`wip/*`) whose pushes are ignored."""
    history_limit: int = DEFAULT_HISTORY_LIMIT
    """The most pushes the history keeps (the oldest go first)."""
    history_max_age: float = DEFAULT_HISTORY_MAX_AGE
    """Seconds a push stays in the history (`history_max_age = "90d"` in the file)."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """Problems found while loading, one line each; the files they name were skipped."""

    def ignores(self, *, remote_url: str, branch: str) -> bool:
        """Whether a push to this (redacted) remote and branch is to be left alone."""
        return any(fnmatchcase(remote_url, pattern) for pattern in self.ignore_remotes) or any(
            fnmatchcase(branch, pattern) for pattern in self.ignore_branches
        )

    def kubeconfig_for(self, context: str) -> str | None:
        """The kubeconfig file [kubeconfigs] names for this context, or None: the usual (merged) kubeconfig."""
        return dict(self.kubeconfigs).get(context)

    @property
    def retention(self) -> Retention:
        return Retention(limit=self.history_limit, max_age=self.history_max_age)

    def as_record(self) -> dict[str, Any]:
        """The settings as plain JSON values, for the session file."""
        record = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "warnings"}
        record["kubeconfigs"] = dict(self.kubeconfigs)
        return record


FileStamp = tuple[int, int, int] | None
"""What tells a changed file from the same one: inode, size and modification time (None: no file)."""


def file_stamp(path: Path) -> FileStamp:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def reload_user_config(previous: Config, environ: Mapping[str, str] = os.environ) -> Config:
    """The user's settings read again: the new ones, or, when the file is now invalid, `previous` with the reason."""
    fresh = load_config(environ=environ, when_invalid="keeping the settings in force until it is fixed")
    if fresh.warnings:
        return replace(previous, warnings=fresh.warnings)
    return fresh


def load_config(
    *,
    repo: Path | None = None,
    environ: Mapping[str, str] = os.environ,
    when_invalid: str = "using the settings without this file",
) -> Config:
    """The merged settings; never raises for a bad file, which is reported in `Config.warnings` instead (each
    warning ends with `when_invalid`, what becomes of the settings)."""
    config = Config()
    layers: list[tuple[Path, Any, bool]] = [(user_config_path(environ), _read_toml, True)]
    if repo is not None:
        layers += [(repo / SEED_REPO_CONFIG, _read_seed_yaml, False), (repo / REPO_CONFIG, _read_toml, False)]
    warnings: list[str] = []
    for path, reader, users_own in layers:
        try:
            values = reader(path)
            if values is not None:
                config = apply_settings(config, values, source=str(path), users_own=users_own)
        except ConfigError as error:
            warnings.append(f"{error.message}; {when_invalid}")
    return replace(config, warnings=tuple(warnings))


def apply_settings(config: Config, values: Mapping[str, Any], *, source: str, users_own: bool = False) -> Config:
    """Apply a table of settings to `config`; raises ConfigError naming `source` and the key at fault.
    `users_own`: the user's own config.toml, the one file that may name kubeconfig files."""
    changes: dict[str, Any] = {}
    known = {f.name for f in fields(Config)} - {"warnings"}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name == "timeout":
            name = "timeout_seconds"
        if name not in known:
            raise ConfigError(f"{source}: unknown key {key!r}")
        if name == "kubeconfigs" and not users_own:
            raise ConfigError(
                f"{source}: {key}: only your own config.toml may name kubeconfig files (a kubeconfig can run "
                f"commands, so a repository must not choose one)"
            )
        changes[name] = _validated(name, value, source=f"{source}: {key}")
    # `context` and `contexts` are one setting: the file that sets either sets both.
    if "context" in changes and "contexts" in changes:
        raise ConfigError(f"{source}: set either context (one) or contexts (a list), not both")
    if "context" in changes:
        changes["contexts"] = ()
    elif "contexts" in changes:
        changes["context"] = ""
    return replace(config, **changes)


def parse_duration(value: Any) -> float:
    """Seconds from `300`, `"90s"`, `"5m"`, `"1h30m"` or `"7d"`; raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())) and value.strip():
        days, hours, minutes = int(match["d"] or 0), int(match["h"] or 0), int(match["m"] or 0)
        seconds = days * 86400 + hours * 3600 + minutes * 60 + float(match["s"] or 0)
    elif isinstance(value, str) and value.strip().isdigit():
        seconds = float(value)
    else:
        raise ValueError(f"expected a duration such as 300, '90s', '5m', '1h30m' or '7d', got {value!r}")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def _validated(name: str, value: Any, *, source: str) -> Any:
    try:
        if name in ("timeout_seconds", "history_max_age"):
            return parse_duration(value)
        if name == "history_limit":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("expected a whole number of pushes, 1 or more")
            return value
        if name in ("enabled", "reconcile"):
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if name == "context":
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
        if name == "kubeconfigs":
            return _kubeconfig_files(value)
        if name == "verbosity":
            if value not in VERBOSITIES:
                raise ValueError(f"expected one of {', '.join(VERBOSITIES)}")
            return value
        items = _string_list(value)
        if name == "monitor_types":
            # Accept `kustomization`, `Kustomizations` as well as `Kustomization`.
            by_lower = {kind.lower(): kind for kind in FLUX_KINDS}
            unknown = [item for item in items if item.lower().removesuffix("s") not in by_lower]
            if unknown:
                raise ValueError(f"unknown kinds {unknown}; known: {', '.join(FLUX_KINDS)}")
            return tuple(by_lower[item.lower().removesuffix("s")] for item in items)
        if name == "contexts" and "" in items:
            raise ValueError("a context name must not be empty")
        if name == "notify_on":
            unknown = [item for item in items if item not in NOTIFY_OUTCOMES]
            if unknown:
                raise ValueError(f"unknown outcomes {unknown}; known: {', '.join(NOTIFY_OUTCOMES)}")
        return items
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _kubeconfig_files(value: Any) -> tuple[tuple[str, str], ...]:
    """The [kubeconfigs] table: context name = kubeconfig file, `~` expanded; a relative path would depend on the
    folder fluxmon happens to start in, so it is refused."""
    if not isinstance(value, Mapping):
        raise ValueError('expected a table of context = "kubeconfig file", such as [kubeconfigs] prod = "~/.kube/prod"')
    pairs: list[tuple[str, str]] = []
    for context, file in value.items():
        if not isinstance(file, str) or not file:
            raise ValueError(f"{context}: expected the path of a kubeconfig file, got {file!r}")
        path = Path(file).expanduser()
        if not path.is_absolute():
            raise ValueError(f"{context}: expected an absolute path or one starting with ~, got {file!r}")
        pairs.append((str(context), str(path)))
    return tuple(pairs)


def _string_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def _read_bounded(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text") from exc


def _read_toml(path: Path) -> Mapping[str, Any] | None:
    text = _read_bounded(path)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _read_seed_yaml(path: Path) -> Mapping[str, Any] | None:
    """The seed design's per-repo file; only the keys it documented are honoured."""
    text = _read_bounded(path)
    if text is None:
        return None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    section = document.get("config") or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: config: expected a mapping")
    values: dict[str, Any] = {}
    if "enabled" in document:
        values["enabled"] = document["enabled"]
    for key in ("timeout", "verbosity", "monitor_types"):
        if key in section:
            values[key] = section[key]
    return values


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
