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

Integrations (`[[webhook]]`, `[[command]]`, `feed_listen`, `feed_token_env`, `feed_token_file`) may be set only in
the user's own config.toml: a cloned repository must not choose commands to run or where a push's details go.
An invalid webhook or command table is left out alone, said in `Config.integration_problems`; the rest of the
file, and the other integrations, still apply.

The tray reads the user's file again whenever it changes (`file_stamp`, `reload_user_config`). A file that turns
invalid then leaves the settings in force as they were, and says why, rather than falling back to the defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
OUTCOMES = ("succeeded", "failed", "timed-out", "superseded", "not-deployed")
"""The final outcomes of a push that a webhook or a command may be run `on` (SessionState values)."""
WEBHOOK_FORMATS = ("json", "slack", "teams")
DEFAULT_WEBHOOK_TIMEOUT_SECONDS = 10.0
"""How long one webhook request may take, connecting and answering, before it counts as failed (and is retried)."""
DEFAULT_COMMAND_TIMEOUT_SECONDS = 300.0
"""How long a command on an outcome may run before it is killed."""
USERS_OWN_ONLY = ("kubeconfigs", "webhooks", "commands", "feed_listen", "feed_token_env", "feed_token_file")
"""Keys only the user's own config.toml may set: each can run something, or send a push's details somewhere."""

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
    webhooks: tuple[Webhook, ...] = ()
    commands: tuple[OutcomeCommand, ...] = ()
    feed_listen: str = ""
    """`host:port` where the tray serves the CCTray feed (empty: it does not); loopback unless a token is set."""
    feed_token_env: str = ""
    feed_token_file: str = ""
    """Where the feed's token is (an environment variable or a file): clients must send it, as a Bearer token or
    a Basic password. Required to listen on anything but loopback."""
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """Problems found while loading, one line each; the files they name were skipped."""
    integration_problems: tuple[str, ...] = field(default=(), compare=False)
    """Webhooks or commands left out as invalid, one line each; the rest of their file applies."""

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
        skipped = ("warnings", "integration_problems", "webhooks", "commands")  # a webhook URL may be a secret
        record = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in skipped}
        record["kubeconfigs"] = dict(self.kubeconfigs)
        return record


@dataclass(frozen=True, kw_only=True, slots=True)
class Webhook:
    """One `[[webhook]]` table: where to POST a push's outcome, in which format, signed with which secret."""

    url: str = field(repr=False)
    """May carry a credential itself (a Slack or Teams webhook URL is one): never logged, shown as `shown`."""
    format: str = "json"
    secret_env: str = ""
    """The environment variable that holds the HMAC secret (read at each delivery, kept in memory only)."""
    secret_file: str = ""
    """Or the file that holds it (its first line)."""
    on: tuple[str, ...] = NOTIFY_OUTCOMES
    timeout_seconds: float = DEFAULT_WEBHOOK_TIMEOUT_SECONDS

    @property
    def shown(self) -> str:
        """The URL's scheme and host only, for logs: its path and query may be the secret."""
        return url_origin(self.url)


@dataclass(frozen=True, kw_only=True, slots=True)
class OutcomeCommand:
    """One `[[command]]` table: a program run (without a shell) when a push comes to one of the outcomes `on`."""

    run: tuple[str, ...]
    on: tuple[str, ...] = NOTIFY_OUTCOMES
    timeout_seconds: float = DEFAULT_COMMAND_TIMEOUT_SECONDS

    @property
    def shown(self) -> str:
        return Path(self.run[0]).name


def url_origin(url: str) -> str:
    """`https://hooks.slack.com/…`: the scheme and host of a URL, never its user, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unreadable URL"
    return f"{parts.scheme}://{host}{port}/…"


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


_TABLE_LISTS = {"webhook": "webhooks", "command": "commands"}
"""`[[webhook]]` and `[[command]]`: TOML's array-of-tables names are singular, the settings plural."""


def apply_settings(config: Config, values: Mapping[str, Any], *, source: str, users_own: bool = False) -> Config:
    """Apply a table of settings to `config`; raises ConfigError naming `source` and the key at fault.
    `users_own`: the user's own config.toml, the one file that may name kubeconfig files."""
    changes: dict[str, Any] = {}
    known = {f.name for f in fields(Config)} - {"warnings", "integration_problems"}
    problems: list[str] = []
    for key, value in values.items():
        name = key.replace("-", "_")
        if name == "timeout":
            name = "timeout_seconds"
        name = _TABLE_LISTS.get(name, name)
        if name not in known:
            raise ConfigError(f"{source}: unknown key {key!r}")
        if name in USERS_OWN_ONLY and not users_own:
            what = (
                "name kubeconfig files (a kubeconfig can run commands"
                if name == "kubeconfigs"
                else ("set integrations (they run commands and send a push's details out")
            )
            raise ConfigError(f"{source}: {key}: only your own config.toml may {what}, so a repository must not)")
        if name in ("webhooks", "commands"):
            changes[name], left_out = _integrations(name, value, source=f"{source}: {key}")
            problems += left_out
            continue
        if name == "feed_listen":
            try:
                changes[name] = _validated(name, value, source=f"{source}: {key}")
            except ConfigError as error:  # the tray carries on without its feed, the rest of the file applies
                problems.append(f"{error.message}; not serving the feed")
            continue
        changes[name] = _validated(name, value, source=f"{source}: {key}")
    # `context` and `contexts` are one setting: the file that sets either sets both.
    if "context" in changes and "contexts" in changes:
        raise ConfigError(f"{source}: set either context (one) or contexts (a list), not both")
    if "context" in changes:
        changes["contexts"] = ()
    elif "contexts" in changes:
        changes["context"] = ""
    if problems:
        changes["integration_problems"] = config.integration_problems + tuple(problems)
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


def parse_when(text: str, *, now: float) -> float:
    """`7d`, `12h`, `90m` back from `now`, or a date or time (`2026-11-01`, `2026-11-01T09:00`, local unless a
    zone is given): what `--since`/`--until` and the MCP server's `since` take. Raises ValueError saying which
    forms are understood."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is neither a duration back from now (7d, 12h, 30m) nor a date (2026-11-01)"
        ) from None


def _validated(name: str, value: Any, *, source: str) -> Any:
    try:
        if name in ("timeout_seconds", "history_max_age"):
            return parse_duration(value)
        if name == "history_limit":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("expected a whole number of pushes, 1 or more")
            return value
        if name == "feed_listen":
            if not isinstance(value, str):
                raise ValueError("expected a string such as '127.0.0.1:8765'")
            parse_listen(value)
            return value
        if name in ("feed_token_env", "feed_token_file"):
            if not isinstance(value, str):
                raise ValueError("expected a string")
            if name == "feed_token_file" and value:
                if not Path(value).expanduser().is_absolute():
                    raise ValueError(f"expected an absolute path or one starting with ~, got {value!r}")
                return str(Path(value).expanduser())
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


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (`[::1]:8765` for IPv6; port 0: any free one) -> (host, port); raises ValueError saying what is
    expected."""
    host, sep, port = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected host:port such as 127.0.0.1:8765, got {text!r}")
    return host, int(port)


def _integrations(name: str, value: Any, *, source: str) -> tuple[tuple[Any, ...], list[str]]:
    """The valid `[[webhook]]` or `[[command]]` tables, and one line for each left out (the others still apply)."""
    if not isinstance(value, list):
        raise ConfigError(f"{source}: expected [[{source.rpartition(': ')[2]}]] tables")
    kept: list[Any] = []
    problems: list[str] = []
    for number, table in enumerate(value, start=1):
        try:
            if not isinstance(table, Mapping):
                raise ValueError("expected a table")
            kept.append(_webhook(table) if name == "webhooks" else _command(table))
        except ValueError as exc:
            problems.append(f"{source} #{number}: {exc}; left out (the other integrations still run)")
    return tuple(kept), problems


def _webhook(table: Mapping[str, Any]) -> Webhook:
    if "secret" in table:
        raise ValueError("secret: never the secret itself in the file; secret_env or secret_file names where it is")
    _only_keys(table, ("url", "format", "secret_env", "secret_file", "on", "timeout"))
    url = table.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("url: expected the http(s) URL to POST to")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        valid = False
    if not valid or any(char.isspace() for char in url):
        raise ValueError(f"url: expected an http:// or https:// URL, got {url_origin(url)}")
    fmt = table.get("format", "json")
    if fmt not in WEBHOOK_FORMATS:
        raise ValueError(f"format: expected one of {', '.join(WEBHOOK_FORMATS)}, got {str(fmt)[:40]!r}")
    secret_env, secret_file = table.get("secret_env", ""), table.get("secret_file", "")
    if not isinstance(secret_env, str) or not isinstance(secret_file, str):
        raise ValueError("secret_env, secret_file: expected a string")
    if secret_env and secret_file:
        raise ValueError("set either secret_env or secret_file, not both")
    if secret_file and not Path(secret_file).expanduser().is_absolute():
        raise ValueError(f"secret_file: expected an absolute path or one starting with ~, got {secret_file!r}")
    return Webhook(
        url=url,
        format=fmt,
        secret_env=secret_env,
        secret_file=str(Path(secret_file).expanduser()) if secret_file else "",
        on=_outcomes(table.get("on", list(NOTIFY_OUTCOMES))),
        timeout_seconds=parse_duration(table.get("timeout", DEFAULT_WEBHOOK_TIMEOUT_SECONDS)),
    )


def _command(table: Mapping[str, Any]) -> OutcomeCommand:
    _only_keys(table, ("run", "on", "timeout"))
    run = table.get("run")
    if isinstance(run, str):
        raise ValueError("run: expected a list such as ['./scripts/smoke.sh', '--fast'] (no shell runs it)")
    items = _string_list(run) if run is not None else ()
    if not items or not items[0]:
        raise ValueError("run: expected the program and its arguments, such as ['./scripts/smoke.sh']")
    return OutcomeCommand(
        run=items,
        on=_outcomes(table.get("on", list(NOTIFY_OUTCOMES))),
        timeout_seconds=parse_duration(table.get("timeout", DEFAULT_COMMAND_TIMEOUT_SECONDS)),
    )


def _only_keys(table: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = [str(key) for key in table if key not in known]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; known: {', '.join(known)}")


def _outcomes(value: Any) -> tuple[str, ...]:
    items = _string_list(value)
    unknown = [item for item in items if item not in OUTCOMES]
    if unknown:
        raise ValueError(f"on: unknown outcomes {unknown}; known: {', '.join(OUTCOMES)}")
    return items


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
