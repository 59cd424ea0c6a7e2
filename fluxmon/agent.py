"""`fluxmon mcp`: the push monitor for coding agents, as a stdio MCP server built on the official `mcp` SDK.

An agent (Kiro, Claude Code, VS Code...) starts `fluxmon mcp` and, after a push, asks it the one question fluxmon
answers: has Flux deployed my commit, and if not, why? The tools are thin over what `wait` and the tray use: one
Engine (started by the first call that needs a cluster, and kept for the next ones), `push_spec` from
fluxmon/follow.py, and the history store. Every tool has typed input and output schemas (the pydantic models below).

Decisions:
- Read-only by default. `reconcile` (and `wait_for_deployment`'s `reconcile`) patch Flux objects, so they run only
  under `fluxmon mcp --allow-reconcile`; the server's instructions say so, and the refusal says how to allow it.
- A tool that cannot do what was asked answers with a tool error (`isError`), one line that says what is wrong and
  what to do; invalid arguments too, as MCP SEP-1303 (spec 2025-11-25) has it, so that the model can correct
  itself. A resource that does not exist is a JSON-RPC error, as the SDK makes it.
- Nothing but protocol goes to stdout: the SDK's stdio transport takes fd 1 for itself (and points fd 1 at stderr
  for anything else); logging goes to stderr.
- The sessions an agent can ask about are the pushes this server follows and the history the tray keeps. This
  server does not write to that history (`wait` does not either): the tray owns it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from pydantic import BaseModel, Field

from fluxmon import __version__
from fluxmon.core import paths
from fluxmon.core.config import Config, load_config, parse_duration, parse_when
from fluxmon.core.documents import assess_text
from fluxmon.core.engine import Engine
from fluxmon.core.errors import FluxmonError, GitError
from fluxmon.core.git import run_git
from fluxmon.core.health import ClusterHealth, GiveUp
from fluxmon.core.hints import hint_for
from fluxmon.core.informer import KindStatus
from fluxmon.core.kubeconfig import resolve_targets
from fluxmon.core.objects import ObjectRef
from fluxmon.core.plan import normalize_remote_url
from fluxmon.core.push import PushSnapshot
from fluxmon.core.render import verdict_record
from fluxmon.core.revision import normalize_commit
from fluxmon.core.session import ResourceStatus, SessionState
from fluxmon.core.store import HISTORY_LIMIT, SessionStore, push_key, push_record
from fluxmon.core.terminal import push_progress_lines, push_tree
from fluxmon.core.text import display_line
from fluxmon.core.verdict import Phase
from fluxmon.exits import EXIT_OK
from fluxmon.follow import FOLLOW_GRACE_SECONDS, push_spec

log = logging.getLogger("fluxmon.mcp")

SESSION_URI = "fluxmon://sessions/{id}"
_FLAG = re.compile(r"--(commit|remote|branch|timeout)\b")
REACH_SECONDS = 30.0
"""How long `reconcile` waits for a cluster just connected to be read before it says it cannot reach it."""
SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,200}$")
"""What a session id looks like (the hooks' and the CLI's); anything else is not one, and is never a path."""
RECONCILE_REFUSED = (
    "reconcile is disabled: this server is read-only. To let agents ask Flux to reconcile, start it as "
    "`fluxmon mcp --allow-reconcile` (it needs RBAC patch on the Flux kinds)"
)
INSTRUCTIONS = """\
fluxmon tells whether Flux CD has deployed a pushed git commit to the Kubernetes clusters, and if not, why.

After the user pushes a commit (or after you push one), call wait_for_deployment with the repository's path: it
follows that commit through Flux on every configured cluster, sends progress while it waits, and returns the
report. Then tell the user the outcome in one or two sentences:
- state "succeeded": deployed; say so, with the clusters.
- state "failed": name the failed object and its error, quote the hint's cause, offer the command to run, and
  offer to fix the manifests; after a fixed commit is pushed, call wait_for_deployment again.
- "timed-out", "not-deployed" or "superseded": say what next_step says.
list_sessions and get_session answer about earlier pushes (the tray's history and this server's own);
assess_objects judges Flux objects from YAML (kubectl get -o yaml). The resource fluxmon://sessions/{id} is a
session's record, updated while it is followed.
"""
READ_ONLY_NOTE = (
    "This server is read-only: it never changes the cluster, and reconcile is refused (it is started without "
    "--allow-reconcile)."
)
WRITE_NOTE = "reconcile is allowed (--allow-reconcile): it asks Flux to fetch and apply now, as `flux reconcile` does."

Outcome = Literal[
    "waiting-for-source", "reconciling", "succeeded", "failed", "timed-out", "superseded", "cancelled", "not-deployed"
]
"""The SessionState values, spelled out for the input schema's enum (a test checks they agree)."""


# --- the tools' shapes (their output schemas) ------------------------------------------------------------------------


class ClusterOutcome(BaseModel):
    context: str = Field(description="the kubeconfig context ('' for the current one)")
    state: str = Field(description="this cluster's session state")
    message: str
    failed: str | None = Field(description="the object that failed first there, Kind/namespace/name")
    problem: str | None = Field(description="the cluster's own trouble (unreachable, forbidden...), if any")


class WarningEvent(BaseModel):
    reason: str
    message: str
    revision: str
    timestamp: str
    count: int


class HintModel(BaseModel):
    cause: str = Field(description="what probably went wrong")
    docs: str = Field(description="the Flux documentation that explains it")
    command: str = Field(description="a command to dig further, to copy")


class ObjectReport(BaseModel):
    context: str
    kind: str
    namespace: str
    name: str
    role: str = Field(description="source, kustomization, helmrelease, or upstream (a dependency not deployed)")
    phase: str = Field(description="Ready, Failed, Progressing, Waiting, Pending, Suspended or Unknown")
    reason: str
    message: str
    revision: str
    error: str = Field(description="the best error text: the newest Warning event, else the condition's message")
    applied_by: str | None = None
    depends_on: list[str] = Field(default_factory=list)
    warning_events: list[WarningEvent] = Field(default_factory=list)
    hint: HintModel | None = None


class SessionSummary(BaseModel):
    id: str
    uri: str = Field(description="the session's resource, fluxmon://sessions/{id}")
    state: str = Field(
        description="waiting-for-source, reconciling, or the outcome: succeeded (deployed), failed, "
        "timed-out, superseded, cancelled, not-deployed (no Flux source follows the branch)"
    )
    deployed: bool
    message: str
    commit: str
    branch: str
    remote: str
    repo: str
    subject: str
    started_at: str = Field(description="ISO 8601, UTC")
    ended_at: str | None
    elapsed_seconds: float
    failed: str | None = Field(description="the object that failed first, Kind/namespace/name")
    failed_on: str | None = Field(description="the context it failed on")
    clusters: list[ClusterOutcome]
    active: bool = Field(description="still followed by this server")


class CommandRun(BaseModel):
    command: str = Field(description="the program of a [[command]] on outcome, as the log names it")
    outcome: str = Field(description="the outcome it ran for")
    result: str = Field(description="exited, timed-out, not-found, not-executable, cannot-start, cut-short...")
    exit_status: int | None = Field(description="when it exited: its exit status (negative: killed by a signal)")
    error: str | None


class SessionReport(SessionSummary):
    tree: str = Field(description="the whole session as the terminal shows it (`fluxmon watch`)")
    objects: list[ObjectReport]
    errors: list[str] = Field(description="one line per failed object: where, why, and the error text")
    notes: list[str]
    command: str = Field(description="the command to copy for the first failure ('' when nothing failed)")
    next_step: str = Field(description="what to do now")
    commands: list[CommandRun] = Field(
        default_factory=list, description="the commands on outcome run for it, as the history recorded them"
    )


class SessionList(BaseModel):
    sessions: list[SessionSummary] = Field(description="newest first")


class AssessedObject(BaseModel):
    kind: str
    namespace: str
    name: str
    phase: str
    reason: str
    message: str
    revision: str


class Assessment(BaseModel):
    objects: list[AssessedObject]
    failed: int = Field(description="how many objects failed")
    notes: list[str] = Field(description="objects skipped (not Flux) and fields read as empty")


class ObjectName(BaseModel):
    kind: Literal[
        "GitRepository", "OCIRepository", "Bucket", "HelmRepository", "HelmChart", "Kustomization", "HelmRelease"
    ]
    namespace: str = "flux-system"
    name: str


class ReconcileResult(BaseModel):
    requested: list[str] = Field(description="context: Kind/name for each reconcile requested")


# --- from the engine's values to the shapes ---------------------------------------------------------------------------


def _iso(seconds: float | None) -> str | None:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") if seconds is not None else None


def summary(push: PushSnapshot, *, active: bool) -> SessionSummary:
    return SessionSummary(**_summary_fields(push, active=active))


def _summary_fields(push: PushSnapshot, *, active: bool) -> dict[str, Any]:
    return {
        "id": push.id,
        "uri": SESSION_URI.format(id=push.id),
        "state": push.state.value,
        "deployed": push.state is SessionState.SUCCEEDED,
        "message": push.message,
        "commit": push.commit,
        "branch": push.branch,
        "remote": push.remote,
        "repo": push.repo,
        "subject": push.subject,
        "started_at": _iso(push.started_at),
        "ended_at": _iso(push.ended_at),
        "elapsed_seconds": round(push.elapsed, 3),
        "failed": str(push.failed) if push.failed else None,
        "failed_on": push.failed_on or None,
        "clusters": [
            ClusterOutcome(
                context=cluster.context,
                state=cluster.state.value,
                message=cluster.message,
                failed=str(cluster.failed) if cluster.failed else None,
                problem=cluster.cluster.problem or None,
            )
            for cluster in push.clusters
        ],
        "active": active,
    }


def object_report(resource: ResourceStatus, context: str) -> ObjectReport:
    hint = resource.hint or (hint_for(resource.ref, resource.reason) if resource.phase is Phase.FAILED else None)
    return ObjectReport(
        context=context,
        kind=resource.ref.kind,
        namespace=resource.ref.namespace,
        name=resource.ref.name,
        role=resource.role.value,
        phase=resource.phase.value,
        reason=resource.reason,
        message=resource.message,
        revision=resource.revision,
        error=resource.error,
        applied_by=str(resource.applied_by) if resource.applied_by else None,
        depends_on=[f"{ref} ({phase.value})" for ref, phase in resource.depends_on],
        warning_events=[
            WarningEvent(
                reason=event.reason,
                message=event.message,
                revision=event.revision,
                timestamp=event.timestamp,
                count=event.count,
            )
            for event in resource.events
            if event.type == "Warning"
        ],
        hint=HintModel(cause=hint.cause, docs=hint.docs, command=hint.command) if hint else None,
    )


def report(push: PushSnapshot, *, active: bool) -> SessionReport:
    """The whole report of a push: what `watch` draws, and each object with its error, events and hint."""
    objects = [object_report(resource, cluster.context) for cluster in push.clusters for resource in cluster.resources]
    failing = [entry for entry in objects if entry.phase == Phase.FAILED.value]
    errors = [
        display_line(
            f"{entry.kind}/{entry.namespace}/{entry.name}{f' on {entry.context}' if push.several else ''}: "
            f"{entry.reason}: {entry.error}"
        )
        for entry in failing
    ]
    first = next((entry for entry in failing if entry.hint is not None), None)
    return SessionReport(
        **_summary_fields(push, active=active),
        tree=push_tree(push, verbosity="verbose", colour=False),
        objects=objects,
        errors=errors,
        notes=[note for cluster in push.clusters for note in cluster.notes],
        command=first.hint.command if first is not None and first.hint is not None else "",
        next_step=next_step(push),
    )


def next_step(push: PushSnapshot) -> str:
    """What the agent should do with this outcome (the instructions say the same, in general)."""
    target = f"{push.short_commit} on {push.branch}"
    match push.state:
        case SessionState.SUCCEEDED:
            return f"Tell the user that Flux has deployed {target}."
        case SessionState.FAILED:
            return (
                f"Tell the user that Flux failed to deploy {target}: name {push.failed} and its error, and the "
                "hint. Offer to fix it; once a fix is pushed, call wait_for_deployment again."
            )
        case SessionState.TIMED_OUT:
            return (
                "Not deployed within the timeout: say which objects are still Progressing or Waiting, and call "
                "wait_for_deployment again (a longer timeout) or get_session later."
            )
        case SessionState.NOT_DEPLOYED:
            return (
                "No Flux source on these clusters follows this remote and branch, so nothing will deploy it: check "
                "the branch, or the GitRepository's spec.url and spec.ref."
            )
        case SessionState.SUPERSEDED:
            return "A newer push to the branch replaced this commit: follow the newer one."
        case SessionState.CANCELLED:
            return "The session was cancelled; call wait_for_deployment to follow the commit again."
    return f"Still in progress: call get_session {push.id} again, or read {SESSION_URI.format(id=push.id)}."


# --- filters ---------------------------------------------------------------------------------------------------------


def _same_repo(push: PushSnapshot, wanted: str) -> bool:
    """`repo` is a local path (the clone pushed from) or a remote URL, in any of git's spellings."""
    if push.repo and Path(push.repo) == Path(wanted).expanduser().resolve():
        return True
    try:
        return normalize_remote_url(push.remote) == normalize_remote_url(wanted)
    except ValueError:
        return False


# --- the server ------------------------------------------------------------------------------------------------------

Update = PushSnapshot | ClusterHealth


class Agent:
    """The server's state: the engine (started lazily), the pushes it follows, the waiters and the subscribers.

    The engine's callbacks come on its worker threads; they only hand the value to the event loop
    (`call_soon_threadsafe`), where `_relay` tells the waiting tools and the resource subscribers.
    """

    def __init__(
        self,
        *,
        allow_reconcile: bool,
        contexts: Sequence[str] = (),
        all_contexts: bool = False,
        kubeconfig: str | None = None,
    ) -> None:
        self.allow_reconcile = allow_reconcile
        self.contexts = tuple(contexts)
        self.all_contexts = all_contexts
        self.kubeconfig = kubeconfig
        self.store = SessionStore(paths.state_dir())
        self.pushes: dict[str, PushSnapshot] = {}
        """Every push this server has followed, latest snapshot (newest last)."""
        self._engine: Engine | None = None
        self._engine_lock = anyio.Lock()
        self._numbers = itertools.count(1)
        self._waiters: dict[str, MemoryObjectSendStream[Update]] = {}
        self._subscribers: dict[str, set[ServerSession]] = {}
        self._bus = InMemorySubscriptionBus()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._updates: MemoryObjectSendStream[Update] | None = None

    # --- lifecycle ---

    async def serve(self) -> None:
        """Serve MCP on stdio until the client closes it; then stop the engine."""
        self._loop = asyncio.get_running_loop()
        send, receive = anyio.create_memory_object_stream[Update](math.inf)
        self._updates = send
        server = build_server(self)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._relay, receive)
                await server.run_stdio_async()
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                engine, self._engine = self._engine, None
                if engine is not None:
                    await anyio.to_thread.run_sync(engine.stop)

    async def engine(self) -> Engine:
        """The engine, started at the first call that needs a cluster; a start that fails is tried again next time."""
        async with self._engine_lock:
            if self._engine is not None:
                return self._engine
            config = load_config()
            try:
                targets = resolve_targets(
                    flag_contexts=self.contexts,
                    all_contexts=self.all_contexts,
                    kubeconfig=self.kubeconfig,
                    config=config,
                )
            except FluxmonError as error:
                raise ToolError(_one_line(error)) from None
            engine = Engine(targets=targets, kinds=config.monitor_types)
            engine.subscribe(self._from_engine)
            engine.subscribe_health(self._from_engine)
            try:
                await anyio.to_thread.run_sync(engine.start)
            except FluxmonError as error:
                raise ToolError(_one_line(error)) from None
            self._engine = engine
            return engine

    def _from_engine(self, update: Update) -> None:
        """On an engine thread: hand it to the event loop, never wait on it."""
        if self._loop is not None and self._updates is not None:
            self._loop.call_soon_threadsafe(self._updates.send_nowait, update)

    async def _relay(self, updates: MemoryObjectReceiveStream[Update]) -> None:
        async for update in updates:
            if isinstance(update, ClusterHealth):
                for each in list(self._waiters.values()):
                    each.send_nowait(update)
                continue
            previous = self.pushes.get(update.id)
            self.pushes[update.id] = update
            if update.settled and (previous is None or not previous.settled):
                await anyio.to_thread.run_sync(self._record, update)
            if len(self.pushes) > HISTORY_LIMIT:  # the oldest settled one goes; the history keeps its outcome
                oldest = next((key for key, push in self.pushes.items() if push.settled), None)
                if oldest is not None:
                    del self.pushes[oldest]
            if (waiter := self._waiters.get(update.id)) is not None:
                waiter.send_nowait(update)
            await self._resource_updated(SESSION_URI.format(id=update.id))

    def _record(self, push: PushSnapshot) -> None:
        """Keep the settled push's outcome in the user's one history, beside the tray's and `wait`'s (#14)."""
        try:
            self.store.record(push, follower="mcp")
        except FluxmonError as error:
            log.warning("the outcome of %s is not in the history: %s", push.id, _one_line(error))

    async def _resource_updated(self, uri: str) -> None:
        """Tell the subscribers: on `resources/subscribe` (the handshake era, what IDEs speak today) and on
        `subscriptions/listen` streams (2026-07-28)."""
        for session in list(self._subscribers.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception as error:  # a client gone away: forget it, and serve the others
                log.info("dropping a subscriber of %s: %s", uri, error)
                self._subscribers[uri].discard(session)
        await self._bus.publish(ResourceUpdated(uri=uri))

    def subscribe(self, uri: str, session: ServerSession) -> None:
        self._subscribers.setdefault(uri, set()).add(session)

    def unsubscribe(self, uri: str, session: ServerSession) -> None:
        self._subscribers.get(uri, set()).discard(session)

    @property
    def bus(self) -> InMemorySubscriptionBus:
        return self._bus

    # --- what the tools do ---

    def find(self, session_id: str) -> tuple[PushSnapshot, bool]:
        """A session by id: one this server follows, else one from the history. Raises a ToolError if neither."""
        if not SESSION_ID.match(session_id):
            raise ToolError(f"{session_id[:80]!r} is not a session id; list_sessions shows the ids")
        if (push := self.pushes.get(session_id)) is not None:
            return push, not push.settled
        for push in self.store.recent(HISTORY_LIMIT):
            if push.id == session_id:
                return push, False
        raise ToolError(f"no session {session_id!r}: list_sessions shows the sessions there are")

    def commands(self, push: PushSnapshot) -> list[CommandRun]:
        """The commands on outcome the history recorded for the push (by any fluxmon): of its record, else of the
        record that stands for the same push (the tray's, when this server followed it too)."""
        records = self.store.history(HISTORY_LIMIT)
        key = push_key(remote=push.remote, branch=push.branch, commit=push.commit, repo=push.repo)
        record = next((r for r in records if r["id"] == push.id), None) or next(
            (r for r in records if r.get("key") == key), None
        )
        return [
            CommandRun(
                command=display_line(str(c.get("command"))),
                outcome=str(c.get("outcome")),
                result=str(c.get("result")),
                exit_status=c.get("exit_status") if isinstance(c.get("exit_status"), int) else None,
                error=display_line(str(c["error"])) if c.get("error") else None,
            )
            for c in (record or {}).get("commands", ())
        ]

    def sessions(self) -> list[tuple[PushSnapshot, bool]]:
        """This server's pushes, then the history's, newest first, each once."""
        own = [(push, not push.settled) for push in reversed(self.pushes.values())]
        seen = set(self.pushes)
        return own + [(push, False) for push in self.store.recent(HISTORY_LIMIT) if push.id not in seen]

    async def wait(
        self,
        *,
        repo: str,
        commit: str | None,
        remote: str | None,
        branch: str | None,
        timeout: str | None,
        reconcile: bool,
        ctx: Context,
    ) -> SessionReport:
        if reconcile and not self.allow_reconcile:
            raise ToolError(RECONCILE_REFUSED)
        config, spec_args, seconds = await anyio.to_thread.run_sync(
            _wait_arguments, repo, commit, remote, branch, timeout
        )
        try:
            spec = await anyio.to_thread.run_sync(lambda: push_spec(spec_args, config=config, timeout=seconds))
        except FluxmonError as error:
            # push_spec speaks to the command line: its flags are this tool's arguments.
            raise ToolError(_FLAG.sub(r"\1", _one_line(error))) from None
        spec = replace(spec, id=f"mcp-{os.getpid()}-{next(self._numbers)}-{spec.commit[:8]}", reconcile=reconcile)
        engine = await self.engine()
        send, receive = anyio.create_memory_object_stream[Update](math.inf)
        self._waiters[spec.id] = send
        try:
            healths = {health.context: health for health in await anyio.to_thread.run_sync(engine.health)}
            if not await anyio.to_thread.run_sync(engine.add, spec):
                raise ToolError("the engine stopped; call wait_for_deployment again")
            several = len(engine.contexts) > 1
            deadline = time.monotonic() + (spec.created_at + seconds - time.time()) + FOLLOW_GRACE_SECONDS
            push: PushSnapshot | None = None
            progress = 0.0
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                async for update in receive:
                    if isinstance(update, ClusterHealth):
                        healths[update.context] = update
                    else:
                        previous, push = push, update
                        healths.update((c.context, c.cluster) for c in push.clusters if c.cluster.server)
                        lines = push_progress_lines(previous, push, colour=False) or [push.message]
                        if previous is None:  # the session's resource, to read or subscribe to while it runs
                            lines.insert(0, f"following {SESSION_URI.format(id=spec.id)}")
                        # Progress must grow with each notification (MCP spec, progress): the seconds followed.
                        progress = max(progress + 0.001, round(push.elapsed, 3))
                        await ctx.report_progress(progress, seconds, display_line("; ".join(lines))[:500])
                        if push.state.final:
                            break
                    for health in healths.values():
                        trouble = health.error()
                        if trouble is not None and not (several and health.give_up is GiveUp.UNREACHABLE):
                            raise ToolError(_one_line(trouble))  # waiting on could only end in a timeout
        finally:
            self._waiters.pop(spec.id, None)
            send.close()
        if push is None or not push.state.final:
            if not several:
                health = next(iter(healths.values()), ClusterHealth())
                if not health.reached:
                    raise ToolError(_one_line(health.unreached(seconds)))
            message = push.message if push is not None else "no result"
            raise ToolError(display_line(f"timed out after {seconds:g}s: {message}"))
        return report(push, active=not push.settled)

    async def reconcile(self, objects: list[ObjectName], context: str | None) -> ReconcileResult:
        if not self.allow_reconcile:
            raise ToolError(RECONCILE_REFUSED)
        if not objects:
            raise ToolError("objects: name at least one Flux object, e.g. {kind: GitRepository, name: flux-system}")
        engine = await self.engine()
        contexts = engine.contexts
        if context is not None and context not in contexts:
            raise ToolError(f"context {context!r} is not followed here; these are: {', '.join(contexts)}")
        refs = [ObjectRef(kind=o.kind, namespace=o.namespace, name=o.name) for o in objects]
        chosen = [context] if context is not None else list(contexts)
        await self._reached(engine, chosen, kinds={ref.kind for ref in refs})
        requested, missed = [], []
        for each in chosen:
            try:
                done = await anyio.to_thread.run_sync(engine.reconcile_now, each, refs)
            except FluxmonError as error:
                raise ToolError(_one_line(error)) from None
            where = f"{each}: " if each else ""
            requested += [where + line for line in done]
            missed += [f"{where}{ref.kind}/{ref.name}" for ref in refs if f"{ref.kind}/{ref.name}" not in done]
        if missed:
            raise ToolError(
                f"Flux does not serve the kind of {', '.join(missed)} on that cluster, so nothing was asked of it"
                + (f" (requested: {', '.join(requested)})" if requested else "")
            )
        return ReconcileResult(requested=requested)

    async def _reached(self, engine: Engine, contexts: Sequence[str], *, kinds: set[str]) -> None:
        """Wait until each context's cache has read `kinds` (a request needs the kind discovered: one kind read is
        not all of them, on a busy real API server), or say why it cannot."""
        key = f"health-{next(self._numbers)}"
        send, receive = anyio.create_memory_object_stream[Update](math.inf)
        self._waiters[key] = send
        try:
            healths = {health.context: health for health in await anyio.to_thread.run_sync(engine.health)}
            with anyio.move_on_after(REACH_SECONDS):
                while True:
                    for health in healths.values():
                        if health.context in contexts and (trouble := health.error()) is not None:
                            raise ToolError(_one_line(trouble))
                    if all(_has_read(healths.get(each, ClusterHealth()), kinds) for each in contexts):
                        return
                    update = await receive.receive()
                    if isinstance(update, ClusterHealth):
                        healths[update.context] = update
        finally:
            self._waiters.pop(key, None)
            send.close()
        unreached = [each for each in contexts if not _has_read(healths.get(each, ClusterHealth()), kinds)]
        health = healths.get(unreached[0], ClusterHealth(context=unreached[0]))
        raise ToolError(_one_line(health.unreached(REACH_SECONDS)))


def _one_line(error: FluxmonError) -> str:
    return display_line(f"{error.title}: {error.message}")


def _wait_arguments(
    repo: str, commit: str | None, remote: str | None, branch: str | None, timeout: str | None
) -> tuple[Config, argparse.Namespace, float]:
    """Check the arguments (git runs here, so off the event loop) and say plainly what is wrong with one."""
    path = Path(repo).expanduser()
    if not path.is_absolute():
        raise ToolError(f"repo {repo[:200]!r}: give the absolute path of the git repository the push came from")
    if not path.is_dir():
        raise ToolError(f"repo {repo[:200]!r}: no such directory")
    try:
        inside = run_git(["rev-parse", "--is-inside-work-tree"], cwd=path).strip() == "true"
    except GitError:
        inside = False
    if not inside:
        raise ToolError(f"repo {repo[:200]!r} is not a git repository: give the path of the clone you pushed from")
    if commit is not None:
        try:
            normalize_commit(commit)
        except ValueError as exc:
            raise ToolError(f"commit {commit[:60]!r}: {exc}") from None
    config = load_config(repo=path)
    try:
        seconds = parse_duration(timeout) if timeout else config.timeout_seconds
    except ValueError as exc:
        raise ToolError(f"timeout: {exc}") from None
    args = argparse.Namespace(repo=path, commit=commit, remote=remote, branch=branch, reconcile=False)
    return config, args, seconds


def build_server(agent: Agent) -> MCPServer:
    """The MCP server: its tools, the session resource and its subscriptions, over `agent`."""
    server = MCPServer(
        "fluxmon",
        title="Flux Push Monitor",
        version=__version__,
        instructions=INSTRUCTIONS + (WRITE_NOTE if agent.allow_reconcile else READ_ONLY_NOTE),
        website_url="https://fluxcd.io/flux/",
        log_level="WARNING",
        subscriptions=agent.bus,
    )

    @server.tool(title="List the pushes fluxmon knows", annotations=types.ToolAnnotations(read_only_hint=True))
    def list_sessions(
        repo: Annotated[str | None, Field(description="a local repository path or a remote URL")] = None,
        branch: Annotated[str | None, Field(description="the pushed branch")] = None,
        cluster: Annotated[str | None, Field(description="a kubeconfig context the push was followed on")] = None,
        outcome: Annotated[Outcome | None, Field(description="the session state")] = None,
        since: Annotated[str | None, Field(description="e.g. 7d, 12h, 90m, or an ISO date")] = None,
        limit: Annotated[int, Field(ge=1, le=HISTORY_LIMIT)] = 20,
    ) -> SessionList:
        """The pushes fluxmon has followed (the tray's history and this server's own), newest first."""
        try:
            start = parse_when(since, now=time.time()) if since else None
        except ValueError as exc:
            raise ToolError(f"since {exc}") from None
        found = []
        for push, active in agent.sessions():
            if repo and not _same_repo(push, repo):
                continue
            if branch and push.branch != branch:
                continue
            if cluster is not None and all(c.context != cluster for c in push.clusters):
                continue
            if outcome and push.state.value != outcome:
                continue
            if start is not None and push.started_at < start:
                continue
            found.append(summary(push, active=active))
            if len(found) >= limit:
                break
        return SessionList(sessions=found)

    @server.tool(title="One push's whole report", annotations=types.ToolAnnotations(read_only_hint=True))
    def get_session(id: Annotated[str, Field(description="a session id from list_sessions")]) -> SessionReport:
        """The whole report of one push: the tree, each object's phase, errors, Warning events and hints, the
        command to copy, and what to do next."""
        push, active = agent.find(id)
        return report(push, active=active).model_copy(update={"commands": agent.commands(push)})

    @server.tool(
        title="Wait until Flux has deployed a commit",
        # Read-only unless this server may ask Flux to reconcile (its `reconcile` argument).
        annotations=types.ToolAnnotations(read_only_hint=not agent.allow_reconcile, open_world_hint=True),
    )
    async def wait_for_deployment(
        repo: Annotated[str, Field(description="absolute path of the git repository the push came from")],
        ctx: Context,
        commit: Annotated[str | None, Field(description="the pushed commit, 7 to 40 hex (default: HEAD)")] = None,
        remote: Annotated[str | None, Field(description="remote name or URL (default: the upstream's)")] = None,
        branch: Annotated[str | None, Field(description="the pushed branch (default: the upstream's)")] = None,
        timeout: Annotated[str | None, Field(description="e.g. 90s, 5m (default: from config, 5m)")] = None,
        reconcile: Annotated[bool, Field(description="ask Flux to fetch now (only with --allow-reconcile)")] = False,
    ) -> SessionReport:
        """Follow a pushed commit through Flux on every configured cluster until it is deployed, fails, or times
        out, with progress notifications while waiting; returns the final report."""
        return await agent.wait(
            repo=repo, commit=commit, remote=remote, branch=branch, timeout=timeout, reconcile=reconcile, ctx=ctx
        )

    @server.tool(title="Judge Flux objects from YAML", annotations=types.ToolAnnotations(read_only_hint=True))
    def assess_objects(
        yaml: Annotated[str, Field(description="Flux objects as `kubectl get -o yaml` (or -o json) prints them")],
        commit: Annotated[str | None, Field(description="judge relative to this pushed commit (7 to 40 hex)")] = None,
    ) -> Assessment:
        """A verdict per Flux object: Ready, Failed, Progressing, Waiting, Pending, Suspended or Unknown."""
        target = None
        if commit:
            try:
                target = normalize_commit(commit)
            except ValueError as exc:
                raise ToolError(f"commit {commit[:60]!r}: {exc}") from None
        try:
            assessed = assess_text(yaml, source="yaml", target=target)
        except FluxmonError as error:
            raise ToolError(display_line(error.message)) from None
        objects = [AssessedObject(**verdict_record(obj, result)) for obj, result in assessed.rows]
        return Assessment(
            objects=objects,
            failed=sum(1 for entry in objects if entry.phase == Phase.FAILED.value),
            notes=list(assessed.notes),
        )

    @server.tool(
        title="Ask Flux to reconcile now (needs --allow-reconcile)",
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True),
    )
    async def reconcile(
        objects: Annotated[list[ObjectName], Field(description="sources first, then Kustomizations")],
        context: Annotated[str | None, Field(description="one context (default: every followed one)")] = None,
    ) -> ReconcileResult:
        """`flux reconcile --with-source`: annotate each object with reconcile.fluxcd.io/requestedAt. Refused unless
        the server runs with --allow-reconcile."""
        return await agent.reconcile(objects, context)

    @server.resource(
        SESSION_URI,
        name="session",
        title="A push's record",
        description="The session's record (as `fluxmon wait --json` prints it), updated while it is followed.",
        mime_type="application/json",
    )
    def session_resource(id: str) -> str:
        try:
            push, _ = agent.find(id)
        except ToolError as error:
            raise ResourceNotFoundError(str(error)) from None
        return json.dumps({**push_record(push), "tree": push_tree(push, colour=False)})

    async def on_subscribe(ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        agent.subscribe(str(params.uri), ctx.session)
        return types.EmptyResult()

    async def on_unsubscribe(
        ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        agent.unsubscribe(str(params.uri), ctx.session)
        return types.EmptyResult()

    server.middleware.append(_one_line_tool_errors)
    # MCPServer serves subscriptions/listen (2026-07-28) from the bus; the handshake era's resources/subscribe,
    # which the IDEs speak, is registered on its low-level server (no public hook for it on MCPServer).
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)
    return server


_VALIDATION = re.compile(r"(?s)(?P<head>Error executing tool \S+: )\d+ validation errors? for \S+\n(?P<body>.*)")
_VALIDATION_ITEM = re.compile(r"(?m)^(?P<where>\S[^\n]*)\n\s+(?P<what>.+?)(?: \[type=.*)?$")


def one_line(text: str) -> str:
    """A tool error as one line: pydantic's multi-line report of invalid arguments (which the SDK passes on as it
    is) becomes `invalid arguments: outcome: Input should be ...`; any other text is put on one line."""
    if match := _VALIDATION.match(text):
        items = [f"{item['where']}: {item['what']}" for item in _VALIDATION_ITEM.finditer(match["body"])]
        text = f"{match['head']}invalid arguments: {'; '.join(items)}"
    return display_line(text)


async def _one_line_tool_errors(ctx: ServerRequestContext[Any], call_next: CallNext) -> HandlerResult:
    """Every tool error leaves as one line (middleware, so that it sees the SDK's own errors too; the result is
    already the wire's dict here)."""
    result = await call_next(ctx)
    if ctx.method == "tools/call" and isinstance(result, dict) and result.get("isError"):
        texts = [block.get("text", "") for block in result.get("content", []) if block.get("type") == "text"]
        result = {**result, "content": [{"type": "text", "text": one_line(" ".join(texts))}]}
    return result


def run_mcp(args: argparse.Namespace) -> int:
    """`fluxmon mcp`: serve on stdio until the client closes it."""
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="fluxmon mcp: %(levelname)s %(name)s: %(message)s"
    )
    if sys.stdin.isatty():  # a person ran it: say what it waits for (stderr; stdout is the protocol's)
        print(
            "fluxmon mcp: serving MCP on stdin/stdout for an agent to start; see the README's Agents (MCP) for the "
            "configuration. Ctrl-D ends it.",
            file=sys.stderr,
        )
    agent = Agent(
        allow_reconcile=args.allow_reconcile,
        contexts=args.contexts or (),
        all_contexts=args.all_contexts,
        kubeconfig=args.kubeconfig,
    )
    anyio.run(agent.serve, backend="asyncio")
    return EXIT_OK


def _has_read(health: ClusterHealth, kinds: set[str]) -> bool:
    """The cluster was reached and none of `kinds` is still being read (each is synced, missing or refused)."""
    return health.reached and not any(k.kind in kinds and k.status is KindStatus.SYNCING for k in health.kinds)
