"""`fluxmon mcp` driven by the MCP SDK's own stdio client, as an agent drives it: a real subprocess, real pushes to
the sample fleet, on the simulated API server and on the real kube-apiserver.

The client speaks the initialize handshake (`mode="legacy"`), as the IDEs' agents do today; one test also
connects as the SDK does by default (`auto`), which probes the 2026-07-28 era first.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, get_args

import anyio
import mcp_types as types
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.stdio import stdio_client
from mcp.shared.dispatcher import ProgressFnT

from fluxmon.agent import Outcome
from fluxmon.core import paths
from fluxmon.core.session import SessionState
from fluxmon.core.store import History, SessionStore, command_record
from harness.gitrepos import isolated_env
from harness.snapshots import APPS, BUILD_ERROR, failed_push, failed_snapshot, on_clusters, pushed, snapshot
from tests.fleet import BROKEN_YAML, SCALE_WEB, Fleet

TOOLS = {"list_sessions", "get_session", "wait_for_deployment", "assess_objects", "reconcile"}
CALL_SECONDS = 90.0
"""Far longer than any call here needs; a call that hangs fails the test instead of the suite's timeout."""


class Server:
    """One `fluxmon mcp` process and its client; what it wrote on stderr is in `stderr` once it has stopped."""

    def __init__(self, client: Client, errlog: Path) -> None:
        self.client = client
        self.errlog = errlog
        self.updated: list[str] = []
        self.update_seen = anyio.Event()
        self.not_protocol: list[Exception] = []
        """What the client could not read on the server's stdout: must stay empty (nothing but protocol there)."""

    @property
    def stderr(self) -> str:
        return self.errlog.read_text(errors="replace")

    async def call(
        self, name: str, arguments: dict[str, Any], progress: ProgressFnT | None = None
    ) -> types.CallToolResult:
        with anyio.fail_after(CALL_SECONDS):
            return await self.client.call_tool(name, arguments, progress_callback=progress)

    async def ok(self, name: str, arguments: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        result = await self.call(name, arguments, **kwargs)
        assert not result.is_error, _text(result)
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def refused(self, name: str, arguments: dict[str, Any]) -> str:
        result = await self.call(name, arguments)
        assert result.is_error, result
        text = _text(result)
        assert "\n" not in text, text
        assert "Traceback" not in text, text
        return text


def _text(result: types.CallToolResult) -> str:
    return " ".join(block.text for block in result.content if isinstance(block, types.TextContent))


@asynccontextmanager
async def serving(tmp_path: Path, env: dict[str, str], *extra: str, mode: str = "legacy") -> AsyncIterator[Server]:
    errlog = tmp_path / "mcp-stderr.log"
    params = StdioServerParameters(command=sys.executable, args=["-m", "fluxmon", "mcp", *extra], env=env)
    server: Server | None = None

    async def on_message(message: IncomingMessage) -> None:
        if isinstance(message, Exception) and server is not None:
            server.not_protocol.append(message)
        if isinstance(message, types.ResourceUpdatedNotification) and server is not None:
            server.updated.append(str(message.params.uri))
            server.update_seen.set()

    with errlog.open("w") as stderr:
        client = Client(stdio_client(params, errlog=stderr), mode=mode, message_handler=on_message)
        async with client:
            server = Server(client, errlog)
            yield server
    assert server.not_protocol == []


def run(test: Callable[[], Awaitable[None]]) -> None:
    anyio.run(test, backend="asyncio")


def cluster_args(fleet: Fleet) -> tuple[str, ...]:
    return ("--kubeconfig", str(fleet.cluster.kubeconfig))


# --- without a cluster -----------------------------------------------------------------------------------------------


def test_outcome_enum_is_the_session_states() -> None:
    assert set(get_args(Outcome)) == {state.value for state in SessionState}


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_lists_the_tools_with_typed_input_and_output_schemas(tmp_path: Path, mode: str) -> None:
    async def test() -> None:
        async with serving(tmp_path, isolated_env(tmp_path), mode=mode) as server:
            tools = {tool.name: tool for tool in (await server.client.list_tools()).tools}
            assert set(tools) == TOOLS
            for tool in tools.values():
                assert tool.input_schema["type"] == "object"
                assert tool.output_schema is not None, tool.name
                assert tool.output_schema["type"] == "object", tool.name
                assert tool.description
            wait = tools["wait_for_deployment"].input_schema
            assert wait["required"] == ["repo"]
            assert {"repo", "commit", "remote", "branch", "timeout"} <= set(wait["properties"])
            assert "ctx" not in wait["properties"]
            assert {"state", "deployed", "objects", "errors", "tree", "command", "next_step"} <= set(
                tools["wait_for_deployment"].output_schema["properties"]  # type: ignore[index]
            )
            assert tools["list_sessions"].annotations is not None
            assert tools["list_sessions"].annotations.read_only_hint
            assert "read-only" in (server.client.instructions or "")
            templates = await server.client.list_resource_templates()
            assert [t.uri_template for t in templates.resource_templates] == ["fluxmon://sessions/{id}"]

    run(test)


def git_repo(path: Path, env: dict[str, str]) -> Path:
    """A clone with one commit and no upstream."""
    init = ["init", "-q", "-b", "main", str(path)]
    for command in (init, ["-C", str(path), "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *command], env=env, check=True, timeout=30)
    return path


def test_bad_arguments_are_tool_errors_with_one_clear_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    env = isolated_env(tmp_path)
    repo = git_repo(tmp_path / "repo", env)

    async def test() -> None:
        async with serving(tmp_path, env) as server:
            text = await server.refused("wait_for_deployment", {"repo": str(repo), "commit": "not-a-sha"})
            assert "commit 'not-a-sha':" in text
            arguments = {"repo": str(repo), "commit": "abcdef1", "remote": "https://example.com/f.git"}
            text = await server.refused("wait_for_deployment", arguments)
            assert f"commit abcdef1: not found in {repo}; give the full 40-hex sha" in text
            assert "--commit" not in text  # the tool's argument, not the command line's flag
            text = await server.refused("wait_for_deployment", {"repo": str(repo), "timeout": "soon"})
            assert "timeout: expected a duration" in text
            text = await server.refused("wait_for_deployment", {"repo": str(plain)})
            assert f"repo {str(plain)!r} is not a git repository" in text
            text = await server.refused("wait_for_deployment", {"repo": str(tmp_path / "nowhere")})
            assert "no such directory" in text
            text = await server.refused("wait_for_deployment", {"repo": "relative/path"})
            assert "absolute path" in text
            text = await server.refused("get_session", {"id": "no-such-session"})
            assert "no session 'no-such-session'" in text
            assert "list_sessions" in text
            text = await server.refused("get_session", {"id": "../../etc/passwd"})
            assert "is not a session id" in text
            text = await server.refused("assess_objects", {"yaml": "kind: [unclosed"})
            assert "yaml: document 1: line 2, column 1: did not find expected" in text
            text = await server.refused("assess_objects", {"yaml": "", "commit": "zzz"})
            assert "commit 'zzz'" in text
            text = await server.refused("list_sessions", {"since": "last tuesday"})
            assert "since 'last tuesday'" in text
            text = await server.refused("list_sessions", {"outcome": "deployed-ish"})
            assert "outcome" in text
            with pytest.raises(MCPError, match="no session 'gone'"):
                await server.client.read_resource("fluxmon://sessions/gone")
            text = await server.refused("reconcile", {"objects": [{"kind": "GitRepository", "name": "flux-system"}]})
            assert "read-only" in text
            assert "fluxmon mcp --allow-reconcile" in text
        assert "Traceback" not in server.stderr

    run(test)


def test_assess_objects_gives_a_verdict_per_flux_object(tmp_path: Path) -> None:
    failed = """
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system, generation: 2}
status:
  conditions:
  - {type: Ready, status: "False", reason: BuildFailed, message: "kustomize build failed", observedGeneration: 2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: apps}
"""

    async def test() -> None:
        async with serving(tmp_path, isolated_env(tmp_path)) as server:
            result = await server.ok("assess_objects", {"yaml": failed})
        assert result["failed"] == 1
        [entry] = result["objects"]
        assert (entry["kind"], entry["name"], entry["phase"], entry["reason"]) == (
            "Kustomization",
            "apps",
            "Failed",
            "BuildFailed",
        )
        assert result["notes"] == ["skipped v1 ConfigMap apps/settings: not a Flux object"]

    run(test)


# --- on the simulated and the real API server ------------------------------------------------------------------------


def test_a_good_push_is_deployed_with_progress_and_is_then_a_session(fleet: Fleet, tmp_path: Path) -> None:
    sha = fleet.push(SCALE_WEB, "web: three replicas")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def test() -> None:
        async with serving(tmp_path, fleet.env, *cluster_args(fleet)) as server:
            arguments = {"repo": str(fleet.work), "timeout": "60s"}
            report = await server.ok("wait_for_deployment", arguments, progress=on_progress)
            assert (report["state"], report["deployed"], report["commit"]) == ("succeeded", True, sha)
            assert report["errors"] == []
            assert report["command"] == ""
            ready = {(o["kind"], o["name"]): o["phase"] for o in report["objects"]}
            assert ready[("Kustomization", "apps")] == "Ready"
            assert sha[:8] in report["tree"]
            assert "deployed" in report["next_step"]

            again = await server.ok("get_session", {"id": report["id"]})
            assert again["state"] == "succeeded"
            assert again["objects"] == report["objects"]
            listed = await server.ok("list_sessions", {"repo": str(fleet.work), "outcome": "succeeded"})
            assert [s["id"] for s in listed["sessions"]] == [report["id"]]
            assert (await server.ok("list_sessions", {"branch": "elsewhere"}))["sessions"] == []
            content = (await server.client.read_resource(report["uri"])).contents[0]
            assert isinstance(content, types.TextResourceContents)
            assert json.loads(content.text)["state"] == "succeeded"

    run(test)
    (recorded,) = History(paths.state_dir(fleet.env)).read()
    assert (recorded["commit"], recorded["state"], recorded["follower"]) == (sha, "succeeded", "mcp")  # one history
    assert progress, "no progress notification arrived"
    assert progress[0][2] is not None
    assert "fluxmon://sessions/" in progress[0][2]
    assert all(later[0] > earlier[0] for earlier, later in itertools.pairwise(progress))
    assert progress[0][1] == 60.0


def test_a_broken_push_fails_naming_the_object_and_its_error(fleet: Fleet, tmp_path: Path) -> None:
    sha = fleet.push(BROKEN_YAML, "web: broken yaml")

    async def test() -> None:
        async with serving(tmp_path, fleet.env, *cluster_args(fleet)) as server:
            report = await server.ok("wait_for_deployment", {"repo": str(fleet.work), "commit": sha[:12]})
        assert (report["state"], report["deployed"], report["commit"]) == ("failed", False, sha)
        assert report["failed"] == "Kustomization/flux-system/apps"
        [error] = report["errors"]
        assert error.startswith("Kustomization/flux-system/apps: BuildFailed: ")
        apps = next(o for o in report["objects"] if (o["kind"], o["name"]) == ("Kustomization", "apps"))
        assert apps["phase"] == "Failed"
        assert apps["hint"]["command"] == report["command"]
        assert report["command"] == "flux events --for Kustomization/apps -n flux-system"
        assert "fix" in report["next_step"]

    run(test)


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed as of 2026-07-28")
@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_the_session_resource_is_updated_while_the_push_is_followed(fleet: Fleet, tmp_path: Path, mode: str) -> None:
    """The push is not fetched until the test asks Flux to (the source's interval is a minute): the test subscribes
    to the session's resource first, so the updates that follow are certain to be sent. The handshake era (the IDEs'
    agents today) subscribes with `resources/subscribe`, which the SDK warns 2026-07-28 replaced; `auto` negotiates
    2026-07-28 here, and listens with `subscriptions/listen`."""
    sha = fleet.commit_and_push(SCALE_WEB, "web: three replicas")

    async def test() -> None:
        async with serving(tmp_path, fleet.env, *cluster_args(fleet), mode=mode) as server:
            subscribed = anyio.Event()
            uris: list[str] = []

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                if not uris and message and "following fluxmon://sessions/" in message:
                    uris.append(message.split("following ", 1)[1].split(";", 1)[0])
                    tasks.start_soon(subscribe)

            async def subscribe() -> None:
                if mode == "legacy":
                    await server.client.subscribe_resource(uris[0])
                    await anyio.to_thread.run_sync(fleet.reconcile_source)
                    subscribed.set()
                    return
                async with server.client.listen(resource_subscriptions=uris) as stream:
                    await anyio.to_thread.run_sync(fleet.reconcile_source)
                    subscribed.set()
                    async for event in stream:
                        server.updated.append(str(getattr(event, "uri", event)))
                        server.update_seen.set()
                        break

            with anyio.fail_after(CALL_SECONDS):
                async with anyio.create_task_group() as tasks:
                    arguments = {"repo": str(fleet.work), "timeout": "60s"}
                    report = await server.ok("wait_for_deployment", arguments, progress=on_progress)
                    await server.update_seen.wait()
            assert subscribed.is_set()
            assert report["state"] == "succeeded"
            assert report["commit"] == sha
            assert set(server.updated) == {report["uri"]}

    run(test)


def test_reconcile_needs_the_flag_and_then_asks_flux(fleet: Fleet, tmp_path: Path) -> None:
    source = {"kind": "GitRepository", "namespace": "flux-system", "name": "flux-system"}

    async def refused() -> None:
        async with serving(tmp_path, fleet.env, *cluster_args(fleet)) as server:
            text = await server.refused("reconcile", {"objects": [source]})
            assert "fluxmon mcp --allow-reconcile" in text
            text = await server.refused("wait_for_deployment", {"repo": str(fleet.work), "reconcile": True})
            assert "fluxmon mcp --allow-reconcile" in text

    run(refused)
    before = fleet.watcher.objects()["GitRepository/flux-system"]["metadata"].get("annotations") or {}
    assert "reconcile.fluxcd.io/requestedAt" not in before

    async def allowed() -> None:
        async with serving(tmp_path, fleet.env, *cluster_args(fleet), "--allow-reconcile") as server:
            assert "reconcile is allowed" in (server.client.instructions or "")
            result = await server.ok("reconcile", {"objects": [source]})
            [requested] = result["requested"]
            assert requested.endswith(": GitRepository/flux-system"), requested  # named with its context

    run(allowed)
    fleet.watcher.wait_for(
        lambda objects: (
            "reconcile.fluxcd.io/requestedAt"
            in (objects["GitRepository/flux-system"]["metadata"].get("annotations") or {})
        ),
        what="the reconcile request on the GitRepository",
    )


def test_a_cluster_that_cannot_be_reached_is_one_clear_tool_error(tmp_path: Path) -> None:
    """A kubeconfig that points at a closed port: the wait ends with the cluster's error, not a timeout."""
    env = isolated_env(tmp_path)
    repo = git_repo(tmp_path / "repo", env)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: gone\n"
        "clusters: [{name: gone, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "users: [{name: gone, user: {token: t}}]\n"
        "contexts: [{name: gone, context: {cluster: gone, user: gone}}]\n"
    )

    async def test() -> None:
        async with serving(tmp_path, env, "--kubeconfig", str(kubeconfig)) as server:
            text = await server.refused(
                "wait_for_deployment",
                {"repo": str(repo), "remote": "https://example.com/fleet.git", "branch": "main", "timeout": "30s"},
            )
            assert "127.0.0.1:9" in text
        assert "Traceback" not in server.stderr

    run(test)


def test_the_trays_history_is_listed_filtered_and_reported(tmp_path: Path) -> None:
    """Sessions the tray kept: list_sessions filters them, get_session and the resource report one (without any
    cluster: the engine is not started for them)."""
    env = isolated_env(tmp_path)
    now = time.time()

    def at(seconds_ago: float) -> dict[str, Any]:
        return {
            "started_at": now - seconds_ago,
            "updated_at": now - seconds_ago + 40,
            "ended_at": now - seconds_ago + 40,
        }

    store = SessionStore(paths.state_dir(env))
    store.finish(pushed(id="old", **at(10 * 86400)))
    store.finish(failed_push(id="broken", **at(3600)))
    store.finish(on_clusters(dev=snapshot(id="multi", **at(60)), prod=failed_snapshot(id="multi", **at(60))))
    [broken] = [record for record in store.history(5) if record["id"] == "broken"]
    store.record_command(
        command_record(
            key=broken["key"], push_id="broken", delivery="d", command="page-oncall", run=["page-oncall"],
            outcome="failed", result="exited", exit_status=2, error="", finished_at=now, follower="tray",
        )
    )  # fmt: skip

    async def test() -> None:
        async with serving(tmp_path, env) as server:

            async def ids(**filters: Any) -> list[str]:
                return [entry["id"] for entry in (await server.ok("list_sessions", filters))["sessions"]]

            assert await ids() == ["multi", "broken", "old"]
            assert await ids(outcome="failed") == ["multi", "broken"]
            assert await ids(since="7d") == ["multi", "broken"]
            assert await ids(since="30m") == ["multi"]
            assert await ids(cluster="prod") == ["multi"]
            assert await ids(repo="https://git.example.com/acme/fleet") == ["multi", "broken", "old"]
            assert await ids(repo="git@git.example.com:acme/fleet.git", limit=1) == ["multi"]
            assert await ids(repo="https://git.example.com/acme/other") == []
            assert await ids(branch="main", outcome="succeeded") == ["old"]

            report = await server.ok("get_session", {"id": "broken"})
            assert (report["state"], report["failed"], report["active"]) == ("failed", str(APPS), False)
            assert report["errors"] == [f"{APPS}: BuildFailed: {BUILD_ERROR}"]
            assert report["command"] == "flux events --for Kustomization/apps -n flux-system"
            assert report["commands"] == [
                {"command": "page-oncall", "outcome": "failed", "result": "exited", "exit_status": 2, "error": None}
            ]
            multi = await server.ok("get_session", {"id": "multi"})
            assert (multi["failed_on"], [c["state"] for c in multi["clusters"]]) == ("prod", ["succeeded", "failed"])
            assert multi["errors"] == [f"{APPS} on prod: BuildFailed: {BUILD_ERROR}"]
            content = (await server.client.read_resource("fluxmon://sessions/broken")).contents[0]
            assert isinstance(content, types.TextResourceContents)
            assert json.loads(content.text)["failed"] == str(APPS)

    run(test)
