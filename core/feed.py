"""The CCTray feed: Flux deployments as `cctray.xml`, the one format CCMenu, BuildNotify, CatLight and Nevergreen
all read (https://cctray.org/v1/), so that every one of them shows pushes, per commit, with no new app to learn.

    <Projects>
      <Project name="github.com/acme/fleet main" activity="Sleeping" lastBuildStatus="Failure"
               lastBuildLabel="1a2b3c4" lastBuildTime="2026-12-01T02:06:11+00:00"
               webUrl="https://github.com/acme/fleet/commit/1a2b3c4…"/>
    </Projects>

One project per remote and branch, and per cluster when a push is followed on several (`… main @ prod`):
`activity` is Building while a push to it is followed, else Sleeping; `lastBuildStatus` is the latest outcome:
Success (deployed), Failure (failed), Exception (timed out: the cluster was slow or unreachable) or Unknown
(not followed by any Flux source, superseded, cancelled, or no outcome yet). It is read from the history
(SessionStore.recent) and the pushes being followed now; `FeedServer` serves it, loopback only unless a token is
set, which clients send as a Bearer token or a Basic password.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import socket
import threading
from base64 import b64decode
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import quoteattr

from fluxmon.core.config import Config, parse_listen
from fluxmon.core.errors import ConfigError
from fluxmon.core.push import PushSnapshot
from fluxmon.core.redact import redact_url
from fluxmon.core.revision import short_sha
from fluxmon.core.session import SessionState
from fluxmon.core.store import SessionStore

log = logging.getLogger("fluxmon.feed")

FEED_PATH = "/cctray.xml"
DEFAULT_FEED_LISTEN = "127.0.0.1:8765"
FEED_HISTORY_PUSHES = 500
"""The newest pushes the feed reads from the history at each request: each project shows its latest outcome."""
REQUEST_TIMEOUT_SECONDS = 10.0
"""A client that opens a connection and sends nothing is dropped after this long (it would hold a thread)."""

_STATUS = {
    SessionState.SUCCEEDED: "Success",
    SessionState.FAILED: "Failure",
    SessionState.TIMED_OUT: "Exception",
}
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters XML 1.0 cannot carry at all, even escaped: a subject or branch with one would break every client."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Following:
    """A push being followed now: enough to mark its project Building (a spec from the store knows no clusters)."""

    remote: str
    branch: str
    commit: str
    started_at: float
    contexts: tuple[str, ...] = ()
    """The clusters it is followed on; empty: every project of its remote and branch."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Project:
    name: str
    activity: str
    last_build_status: str
    last_build_label: str
    last_build_time: str
    web_url: str


def project_name(remote: str, branch: str, context: str = "") -> str:
    """`github.com/acme/fleet main`, and ` @ prod` when the push is followed on several clusters."""
    where = _where(remote)
    return f"{where} {branch}" + (f" @ {context}" if context else "")


def _where(remote: str) -> str:
    """The remote without scheme, credentials or `.git`: `github.com/acme/fleet`."""
    url = redact_url(remote)
    if "://" in url:
        parts = urlsplit(url)
        url = f"{parts.hostname or ''}{parts.path}"
    elif re.match(r"^[\w.-]+@[\w.-]+:", url):  # scp-like git@host:path
        user_host, _, path = url.partition(":")
        url = f"{user_host.rpartition('@')[2]}/{path}"
    return url.removesuffix("/").removesuffix(".git")


def web_url(remote: str, commit: str) -> str:
    """The commit's page on its forge, where one can be made from the remote (https or scp-like); else ""."""
    url = redact_url(remote)
    if url.startswith(("https://", "http://")):
        parts = urlsplit(url)
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        base = f"{parts.scheme}://{host}{parts.path}"
    elif url.startswith("ssh://") or re.match(r"^[\w.-]+@[\w.-]+:", url):
        base = "https://" + _where(url)
    else:
        return ""  # a local path or file:// has no page
    base = base.removesuffix("/").removesuffix(".git")
    # GitHub, Gitea and Forgejo serve /commit/<sha>; GitLab serves it too (redirecting to /-/commit/).
    return f"{base}/commit/{commit}" if commit else base


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def feed_projects(settled: Iterable[PushSnapshot], following: Iterable[Following]) -> list[Project]:
    """The projects: the latest outcome of each remote and branch (and cluster, when there are several), Building
    while a push to it is followed. `settled` in any order; the newest decides."""
    latest: dict[tuple[str, str, str], tuple[float, str, str, str]] = {}
    for push in settled:
        clusters = push.clusters if push.several else ()
        sides = [(c.context, c.state, c.ended_at or c.updated_at) for c in clusters] or [
            ("", push.state, push.ended_at or push.updated_at)
        ]
        for context, state, ended in sides:
            key = (redact_url(push.remote), push.branch, context)
            if key not in latest or latest[key][0] <= ended:
                latest[key] = (
                    ended,
                    _STATUS.get(state, "Unknown"),
                    push.short_commit,
                    web_url(push.remote, push.commit),
                )
    building: set[tuple[str, str, str]] = set()
    for active in following:
        remote = redact_url(active.remote)
        contexts = [c for c in active.contexts if c] if len(active.contexts) > 1 else []
        keys = (
            [(remote, active.branch, c) for c in contexts]
            or [key for key in latest if key[:2] == (remote, active.branch)]
            or [(remote, active.branch, "")]
        )
        for key in keys:
            building.add(key)
            if key not in latest:
                url = web_url(active.remote, active.commit)
                latest[key] = (active.started_at, "Unknown", short_sha(active.commit), url)
    return [
        Project(
            name=project_name(remote, branch, context),
            activity="Building" if (remote, branch, context) in building else "Sleeping",
            last_build_status=status,
            last_build_label=label,
            last_build_time=_iso(when),
            web_url=url,
        )
        for (remote, branch, context), (when, status, label, url) in sorted(latest.items())
    ]


def store_feed(store: SessionStore) -> bytes:
    """The feed as the state folder has it now: the history, and the pushes being followed (`active/`). Any
    fluxmon process that follows pushes with a state folder (the tray) keeps both."""
    following = [
        Following(remote=spec.remote_url, branch=spec.branch or spec.tag, commit=spec.commit,
                  started_at=spec.created_at)
        for spec in store.load_active()
    ]  # fmt: skip
    return render_cctray(feed_projects(store.recent(FEED_HISTORY_PUSHES), following))


def render_cctray(projects: Sequence[Project]) -> bytes:
    """The XML document; every attribute escaped, and stripped of what XML cannot carry."""

    def attr(name: str, value: str) -> str:
        return f"{name}={quoteattr(_XML_UNSAFE.sub('', value))}"

    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<Projects>"]
    for p in projects:
        attributes = [
            attr("name", p.name),
            attr("activity", p.activity),
            attr("lastBuildStatus", p.last_build_status),
            attr("lastBuildLabel", p.last_build_label),
            attr("lastBuildTime", p.last_build_time),
        ]
        if p.web_url:
            attributes.append(attr("webUrl", p.web_url))
        lines.append(f"  <Project {' '.join(attributes)}/>")
    lines.append("</Projects>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def feed_token(*, token_env: str, token_file: str, environ: Mapping[str, str]) -> str:
    """The feed's token from the environment variable or file named (kept in memory only); "" when none is
    named. Raises ConfigError when one is named and cannot be read: serving without it would be open."""
    if token_env:
        value = environ.get(token_env, "").strip()
        if not value:
            raise ConfigError(f"feed_token_env {token_env} is not set; export it, or leave the feed on loopback")
        return value
    if token_file:
        try:
            value = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
            raise ConfigError(f"feed_token_file {token_file}: {reason}") from None
        if not value:
            raise ConfigError(f"feed_token_file {token_file} is empty")
        return value
    return ""


def start_feed(config: Config, state_dir: Path, environ: Mapping[str, str]) -> FeedServer | None:
    """The tray's feed (config `feed_listen`), started; None when not asked for, or when it cannot be served (said
    in one line: the tray carries on without it)."""
    if not config.feed_listen:
        return None
    store = SessionStore(state_dir)
    try:
        token = feed_token(token_env=config.feed_token_env, token_file=config.feed_token_file, environ=environ)
        server = FeedServer(config.feed_listen, lambda: store_feed(store), token=token)
        server.start()
    except ConfigError as error:
        log.error("not serving the CCTray feed: %s", error)
        return None
    return server


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FeedServer:
    """`GET /cctray.xml` over HTTP, built fresh from `render` at each request. `start()`, `stop()`.

    Listening on anything but loopback needs a token: the feed names repositories, branches and commits."""

    def __init__(self, listen: str, render: Callable[[], bytes], *, token: str = "") -> None:
        try:
            self.host, self.port = parse_listen(listen)
        except ValueError as exc:
            raise ConfigError(f"feed_listen: {exc}") from exc
        if not is_loopback(self.host) and not token:
            raise ConfigError(
                f"feed_listen {listen}: not a loopback address, so the feed needs a token: set feed_token_env or "
                "feed_token_file (--token-env), or listen on 127.0.0.1"
            )
        self._render = render
        self._token = token
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{FEED_PATH}"

    def start(self) -> None:
        """Bind (raises ConfigError saying why it cannot) and serve on a thread of its own."""
        handler = _handler(self._render, self._token)
        server_class = _IPv6Server if ":" in self.host else ThreadingHTTPServer
        try:
            server = server_class((self.host, self.port), handler)
        except OSError as exc:
            raise ConfigError(f"feed_listen {self.host}:{self.port}: cannot listen: {exc.strerror or exc}") from exc
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="fluxmon-feed", daemon=True)
        self._thread.start()
        log.info("serving the CCTray feed at %s", self.url)

    def stop(self) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        server.server_close()  # joins the request threads
        if thread is not None:
            thread.join(timeout=5)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(render: Callable[[], bytes], token: str) -> type[BaseHTTPRequestHandler]:
    class FeedHandler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_SECONDS
        server_version = "fluxmon-feed"

        def do_GET(self) -> None:
            path = urlsplit(self.path)
            if path.path not in (FEED_PATH, "/"):
                self._reply(HTTPStatus.NOT_FOUND, b"not found: the feed is at /cctray.xml\n", "text/plain")
                return
            if token and not self._authorised(parse_qs(path.query).get("token", [""])[0]):
                self._reply(HTTPStatus.UNAUTHORIZED, b"a token is required\n", "text/plain")
                return
            try:
                body = render()
            except Exception:
                log.exception("could not build the CCTray feed")
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b"the feed could not be built\n", "text/plain")
                return
            self._reply(HTTPStatus.OK, body, "application/xml; charset=utf-8")

        def _authorised(self, query_token: str) -> bool:
            header = self.headers.get("Authorization", "")
            scheme, _, value = header.partition(" ")
            given = query_token
            if scheme.lower() == "bearer":
                given = value.strip()
            elif scheme.lower() == "basic":
                try:
                    given = b64decode(value.strip(), validate=True).decode().partition(":")[2]
                except ValueError:
                    given = ""
            return bool(given) and hmac.compare_digest(given.encode(), token.encode())

        def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if status is HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Basic realm="fluxmon", charset="UTF-8"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            # The request line may carry ?token=...: it is never logged.
            log.debug("feed request from %s", self.client_address[0])

    return FeedHandler
