"""Hand each push's outcome on: signed webhooks and commands, from whichever fluxmon process follows the push.

    Integrations(config, state_dir).on_push    an Engine subscriber: enqueue only, on the engine's thread
    the worker thread ("fluxmon-integrations") claims each outcome in the outbox (core/outbox.py: once across
                  processes), then delivers what is due: a POST per webhook, a run per command; a failed POST
                  is retried with bounded exponential backoff, a command is run once: how it ended (its exit
                  status, or timed out, not found...) is recorded in its outbox entry and, with the push it ran
                  for, in the history (core/store.py `command_record`), by this process, under the history's lock.

Nothing here blocks the engine. A process with a deadline (`fluxmon wait`) passes it, and no attempt outlasts
it: a server that hangs costs `wait` nothing past its own deadline, and the delivery stays in the outbox for the
tray (or the next run) to retry. Every problem is one log line that names the target by its origin or program
name (a Slack URL is a credential), and the session and the other integrations carry on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.client import HTTPException
from pathlib import Path

from fluxmon import __version__
from fluxmon.core.config import Config, OutcomeCommand, Webhook
from fluxmon.core.errors import FluxmonError
from fluxmon.core.outbox import GIVEN_UP, PENDING, SENT, Attempt, Backoff, Entry, Outbox
from fluxmon.core.outcome import (
    IDEMPOTENCY_HEADER,
    PAYLOAD_TYPE,
    PAYLOADS,
    SIGNATURE_HEADER,
    command_environment,
    idempotency_key,
    outcome_payload,
    signature,
)
from fluxmon.core.push import PushSnapshot
from fluxmon.core.redact import redact_text
from fluxmon.core.store import OWNER, SessionStore, command_record, push_key
from fluxmon.core.text import display_line, json_text

log = logging.getLogger("fluxmon.integrations")

STOP_GRACE_SECONDS = 5.0
"""At `stop()` without a deadline, how long what is due now may still take (an attempt under way ends at its own
timeout)."""
OUTPUT_LINES_LOGGED = 200
"""A command's output lines written to the log; the rest is counted, not shown."""
RESPONSE_BYTES_READ = 64 * 1024
BUSY_RETRY_SECONDS = 1.0
"""How soon to look again at an entry that another process is delivering."""


def fingerprint(target: Webhook | OutcomeCommand) -> str:
    """A target's identity in the outbox, without writing its URL (which may be a credential) anywhere."""
    if isinstance(target, Webhook):
        what = f"webhook\n{target.url}\n{target.format}"
    else:
        what = "command\n" + "\n".join(target.run)
    return hashlib.sha256(what.encode()).hexdigest()[:16]


class SecretMissing(FluxmonError):
    title = "Webhook secret missing"


def read_secret(webhook: Webhook, environ: Mapping[str, str]) -> bytes | None:
    """The webhook's HMAC secret, read now and kept in memory only; None when it is to be sent unsigned. Raises
    SecretMissing when one is configured and cannot be read: sending unsigned would defeat its purpose."""
    if webhook.secret_env:
        value = environ.get(webhook.secret_env, "")
        if not value:
            raise SecretMissing(f"secret_env {webhook.secret_env} is not set; export it, or remove secret_env")
        return value.encode()
    if webhook.secret_file:
        try:
            value = Path(webhook.secret_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, UnicodeDecodeError, IndexError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "empty or not text"
            raise SecretMissing(f"secret_file {webhook.secret_file}: {reason}") from None
        if not value:
            raise SecretMissing(f"secret_file {webhook.secret_file} is empty")
        return value.encode()
    return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET without its body (and could send it elsewhere): a failure."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())
_RETRY_STATUSES = frozenset({408, 425, 429})


def post_webhook(webhook: Webhook, entry: Entry, *, secret: bytes | None, timeout: float) -> Attempt:
    """One POST of the entry's exact body; 2xx is delivered, 408/425/429/5xx and network errors are worth a retry,
    any other status is not (a wrong URL or a rejected payload does not fix itself)."""
    body = entry.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"fluxmon/{__version__}",
        IDEMPOTENCY_HEADER: entry.key,
        "X-Fluxmon-Event": PAYLOAD_TYPE,
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(body, secret)
    request = urllib.request.Request(webhook.url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only, checked in config
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(RESPONSE_BYTES_READ)
        return Attempt(ok=True)
    except urllib.error.HTTPError as exc:
        exc.close()
        return Attempt(ok=False, retry=exc.code >= 500 or exc.code in _RETRY_STATUSES, error=f"HTTP {exc.code}")
    except urllib.error.URLError as exc:
        return Attempt(ok=False, retry=True, error=_clean(str(exc.reason), webhook))
    except (TimeoutError, OSError, HTTPException) as exc:
        return Attempt(ok=False, retry=True, error=_clean(str(exc) or type(exc).__name__, webhook))


def _clean(text: str, webhook: Webhook) -> str:
    """An error's text without the URL (which may be the credential) and on one line."""
    return display_line(redact_text(text.replace(webhook.url, webhook.shown)))[:300]


class Integrations:
    """The webhooks and commands of `config`, for pushes followed by this process. `start()`, feed it with
    `on_push`, `stop()`. Without any webhook or command it does nothing (and starts no thread)."""

    def __init__(
        self,
        config: Config,
        state_dir: Path,
        *,
        deadline: float | None = None,
        resume: bool = True,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen
        environ: Mapping[str, str] = os.environ,
        follower: str = OWNER,
    ) -> None:
        """`deadline` (time.monotonic()): no attempt lasts past it (`fluxmon wait`). `resume`: deliver what
        earlier runs left pending too (the tray); else only this process's own claims (`wait`, `watch`).
        `follower`: who this process is in the history that records each command's result."""
        self.webhooks = config.webhooks
        self.commands = config.commands
        self.problems = config.integration_problems
        self.outbox = Outbox(state_dir)
        self.store = SessionStore(state_dir, retention=config.retention)
        self._follower = follower
        self.backoff = backoff
        self._environ = environ
        self._deadline = deadline
        self._resume = resume
        self._pushes: queue.SimpleQueue[PushSnapshot] = queue.SimpleQueue()
        self._seen: set[str] = set()
        self._seen_lock = threading.Lock()
        self._own: set[str] = set()
        self._busy = False
        """The last pass found an entry due and could not take it (another process was delivering it)."""
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.webhooks or self.commands)

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Say each problem of the configuration once, then start the worker (if there is anything to do)."""
        for problem in self.problems:
            log.warning("%s", problem)
        for number, webhook in enumerate(self.webhooks, start=1):
            try:
                read_secret(webhook, self._environ)
            except SecretMissing as error:
                log.error("webhook #%d (%s): %s; its deliveries are not sent", number, webhook.shown, error)
        if not self.enabled or self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="fluxmon-integrations", daemon=True)
        self._thread.start()

    def stop(self, *, deadline: float | None = None) -> None:
        """Hand on what is claimed and due now (each attempt bounded by `deadline`, else STOP_GRACE_SECONDS from
        now), then end the worker. What is still pending stays in the outbox for the next run."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        end = deadline if deadline is not None else time.monotonic() + STOP_GRACE_SECONDS
        self._deadline = min(end, self._deadline) if self._deadline is not None else end
        self._stopping.set()
        self._wake.set()
        longest = max([w.timeout_seconds for w in self.webhooks], default=0.0)
        thread.join(timeout=max(0.0, self._deadline - time.monotonic()) + longest + 1)
        if thread.is_alive():
            log.error("the integrations worker did not stop in time")

    # --- the engine's side ---------------------------------------------------------------------------------------

    def on_push(self, push: PushSnapshot) -> None:
        """An Engine subscriber: an outcome is queued for the worker (on the engine's thread: nothing else)."""
        if not self.enabled or not push.state.final:
            return
        self._pushes.put(push)
        self._wake.set()

    # --- the worker ----------------------------------------------------------------------------------------------

    def _run(self) -> None:
        if self._resume:
            self._guarded(lambda: self.outbox.trim(time.time()))
        while True:
            self._wake.clear()
            self._guarded(self._claim_queued)
            self._guarded(self._deliver_due)
            if self._stopping.is_set() and self._pushes.empty():
                return
            self._wake.wait(timeout=self._idle_seconds())

    def _guarded(self, work: Callable[[], None]) -> None:
        """One error boundary per step: a broken outbox or config says why, and the worker goes on."""
        try:
            work()
        except (FluxmonError, OSError) as error:
            log.error("integrations: %s", error)
        except Exception:
            log.exception("integrations: unexpected error")

    def _idle_seconds(self) -> float | None:
        """Until the next entry of ours is due (None: none is); an entry due now but held by another process is
        looked at again after BUSY_RETRY_SECONDS, not at once (that would spin while the other one works)."""
        if not self._resume and not self._own:
            return None
        due = self.outbox.next_due(None if self._resume else self._own)
        if due is None:
            return None
        return max(BUSY_RETRY_SECONDS, due - time.time()) if self._busy else max(0.0, due - time.time())

    def _claim_queued(self) -> None:
        while True:
            try:
                push = self._pushes.get_nowait()
            except queue.Empty:
                return
            key = idempotency_key(push)
            with self._seen_lock:
                if key in self._seen:
                    continue
                self._seen.add(key)
            self._claim(push, key)

    def _claim(self, push: PushSnapshot, key: str) -> None:
        """One entry per webhook and command that wants this outcome; a process that claimed it before wins."""
        now = time.time()
        payload = outcome_payload(push)
        workdir = push.repo if push.repo and Path(push.repo).is_dir() else str(Path.home())
        targets: list[Webhook | OutcomeCommand] = [*self.webhooks, *self.commands]
        for target in targets:
            if push.state.value not in target.on:
                continue
            if isinstance(target, Webhook):
                body = json_text(PAYLOADS[target.format](push))
                variables: dict[str, str] = {}
            else:
                body = json_text(payload)
                variables = command_environment(push, {})
            entry = Entry(
                kind="webhook" if isinstance(target, Webhook) else "command",
                target=fingerprint(target),
                shown=target.shown,
                key=key,
                push_id=push.id,
                outcome=push.state.value,
                body=body,
                variables=variables,
                workdir=workdir,
                created_at=now,
                next_at=now,
                push_key=push_key(remote=push.remote, branch=push.branch, commit=push.commit, repo=push.repo),
            )
            try:
                claimed = self.outbox.claim(entry)
            except (FluxmonError, OSError) as error:  # the other targets are still claimed
                log.error("%s %s: could not keep it in %s: %s", entry.kind, entry.shown, self.outbox.directory, error)
                continue
            if claimed:
                self._own.add(entry.name)
            else:
                log.info(
                    "%s %s: %s was claimed before (by another fluxmon, or an earlier run)", entry.kind, entry.shown, key
                )

    def _deliver_due(self) -> None:
        now = time.time()
        self._busy = False
        for entry in self.outbox.entries():
            mine = self._resume or entry.name in self._own
            if mine and entry.status == PENDING and entry.next_at <= now and self._time_left() > 0:
                self._busy |= not self._attempt(entry.name)

    def _time_left(self) -> float:
        return float("inf") if self._deadline is None else self._deadline - time.monotonic()

    def _attempt(self, name: str) -> bool:
        """Deliver one entry; False when another process holds it (or did it meanwhile)."""
        result = self.outbox.attempt(name, time.time(), self._deliver, self.backoff)
        if result is None:
            return False
        what = f"{result.kind} {result.shown} ({result.outcome} of {result.push_id})"
        if result.status == SENT and result.kind == "webhook":
            log.info("%s: delivered", what)
        elif result.status == SENT:
            # A smoke test that failed is worth a look: said where `wait` shows it too (its result, not a retry).
            log.log(logging.INFO if result.exit_status == 0 else logging.WARNING, "%s: exit status %s", what,
                    result.exit_status)  # fmt: skip
        elif result.status == GIVEN_UP:
            log.error("%s: %s; given up after %d attempt(s)", what, result.last_error, result.attempts)
        else:
            log.warning(
                "%s: %s; attempt %d, next in %.0fs", what, result.last_error, result.attempts,
                max(0.0, result.next_at - time.time()),
            )  # fmt: skip
        if result.kind == "command" and result.status != PENDING:
            self._record_command(result)
        return True

    def _record_command(self, entry: Entry) -> None:
        """Keep how the command ended in the history, with its push (one line in the log if it cannot be)."""
        command = next((c for c in self.commands if fingerprint(c) == entry.target), None)
        run = [display_line(redact_text(arg)) for arg in command.run] if command is not None else []
        record = command_record(
            key=entry.push_key,
            push_id=entry.push_id,
            delivery=entry.name,
            command=display_line(entry.shown),
            run=run,
            outcome=entry.outcome,
            result=entry.result,
            exit_status=entry.exit_status if entry.result == "exited" else None,
            error=display_line(entry.last_error),
            finished_at=entry.finished_at or time.time(),
            follower=self._follower,
        )
        try:
            self.store.record_command(record)
        except FluxmonError as error:
            log.error("command %s: its result is not in the history: %s", entry.shown, error)

    def _deliver(self, entry: Entry) -> Attempt:
        if entry.kind == "webhook":
            webhook = next((w for w in self.webhooks if fingerprint(w) == entry.target), None)
            if webhook is None:
                return Attempt(ok=False, error="no longer in the config")
            try:
                secret = read_secret(webhook, self._environ)
            except SecretMissing as error:
                return Attempt(ok=False, error=error.message)
            timeout = min(webhook.timeout_seconds, self._time_left())
            return post_webhook(webhook, entry, secret=secret, timeout=max(0.1, timeout))
        command = next((c for c in self.commands if fingerprint(c) == entry.target), None)
        if command is None:
            return Attempt(ok=False, error="no longer in the config", result="not-configured")
        return self._run_command(command, entry)

    def _run_command(self, command: OutcomeCommand, entry: Entry) -> Attempt:
        """Run once, without a shell, in the push's repository: the JSON payload on stdin, FLUXMON_* in the
        environment, its output to the log. Killed (with its process group) at its timeout or the deadline."""
        try:
            process = subprocess.Popen(
                list(command.run),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=entry.workdir,
                env={**self._environ, **entry.variables},
                start_new_session=True,  # its own group: a timeout kills what it started too
            )
        except FileNotFoundError:
            return Attempt(
                ok=False, error=f"command not found: {command.run[0]} (run from {entry.workdir})", result="not-found"
            )
        except PermissionError:
            return Attempt(ok=False, error=f"not executable: {command.run[0]}", result="not-executable")
        except OSError as exc:
            return Attempt(ok=False, error=f"cannot run {command.run[0]}: {exc.strerror}", result="cannot-start")
        ends = time.monotonic() + command.timeout_seconds
        stdin: bytes | None = entry.body.encode()
        while True:
            # Its own timeout, or the deadline a stop() sets meanwhile (the tray quitting), whichever comes first.
            limit = min(ends, self._deadline) if self._deadline is not None else ends
            try:
                output, _ = process.communicate(stdin, timeout=max(0.0, min(limit - time.monotonic(), 1.0)))
                break
            except subprocess.TimeoutExpired:
                stdin = None  # sent once: communicate() goes on from where it was
                if time.monotonic() < limit:
                    continue
            _kill_group(process)
            output, _ = process.communicate()
            self._log_output(entry, output)
            timed_out = limit == ends
            why = f"timed out after {command.timeout_seconds:g}s" if timed_out else "cut short: fluxmon stopped"
            return Attempt(
                ok=False, error=why, exit_status=process.returncode, result="timed-out" if timed_out else "cut-short"
            )
        self._log_output(entry, output)
        return Attempt(ok=True, exit_status=process.returncode, result="exited")

    @staticmethod
    def _log_output(entry: Entry, output: bytes) -> None:
        lines = output.decode("utf-8", "replace").splitlines()
        for line in lines[:OUTPUT_LINES_LOGGED]:
            log.info("command %s: %s", entry.shown, display_line(redact_text(line)))
        if len(lines) > OUTPUT_LINES_LOGGED:
            log.info("command %s: %d more lines not logged", entry.shown, len(lines) - OUTPUT_LINES_LOGGED)

    def records(self, push_id: str) -> list[dict[str, object]]:
        """What became of a push's outcome here: each webhook's and command's status (a command's exit status)."""
        return [
            {"kind": e.kind, "target": e.shown, "outcome": e.outcome, "status": e.status, "attempts": e.attempts,
             "exit_status": e.exit_status, "error": e.last_error or None}
            for e in self.outbox.for_push(push_id)
        ]  # fmt: skip


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
