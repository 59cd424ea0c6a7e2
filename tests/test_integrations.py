"""Hand the outcome on (#14): signed webhooks to a real HTTP server on loopback, retries and the outbox across a
restart (real processes), commands on outcome, and bad input said in one line while the rest carries on."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Collection
from pathlib import Path

import pytest

from fluxmon.core.config import Config, OutcomeCommand, Webhook, load_config
from fluxmon.core.integrations import Integrations
from fluxmon.core.outbox import GIVEN_UP, PENDING, SENT, Backoff, Entry, Outbox
from fluxmon.core.outcome import idempotency_key
from fluxmon.core.push import PushSnapshot, combine
from fluxmon.core.session import SessionState
from fluxmon.core.store import OWNER, SessionStore
from harness.snapshots import COMMIT, failed_snapshot, snapshot
from tests.receiver import receiving

SECRET = "hunter2-webhook-secret"
FAST = Backoff(first_seconds=0.01, max_seconds=0.05, attempts=5)


def failed_push(**changes: object) -> PushSnapshot:
    return combine([failed_snapshot(**{"context": "kind-dev", **changes})])


def deployed_push(**changes: object) -> PushSnapshot:
    return combine([snapshot(SessionState.SUCCEEDED, **{"context": "kind-dev", **changes})])


def signed(body: bytes, secret: str) -> str:
    """How a receiver checks Flux's generic-hmac signature: HMAC-SHA256 of the exact body, hex, `sha256=`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_the_webhook_is_signed_over_its_exact_body_and_carries_the_idempotency_key(tmp_path: Path) -> None:
    push = failed_push()
    with receiving() as receiver:
        hook = Webhook(url=receiver.url, secret_env="HOOK_SECRET")
        integrations = Integrations(Config(webhooks=(hook,)), tmp_path, environ={"HOOK_SECRET": SECRET})
        integrations.start()
        integrations.on_push(push)
        integrations.stop()
        [request] = receiver.wait_for(1)
    assert hmac.compare_digest(request.headers["X-Signature"], signed(request.body, SECRET))
    assert request.headers["X-Signature"] != signed(request.body, "another secret")
    assert request.headers["Idempotency-Key"] == idempotency_key(push)
    payload = json.loads(request.body)
    assert payload["version"] == 1
    assert payload["outcome"] == "failed"
    assert payload["commit"] == COMMIT
    assert payload["failed"] == "Kustomization/flux-system/apps"
    apps = next(o for o in payload["objects"] if o["name"] == "apps")
    assert apps["hint"]["cause"]
    assert payload["times"]["started_at"].endswith("+00:00")


def test_a_server_that_fails_three_times_then_succeeds_gets_the_delivery_exactly_once(tmp_path: Path) -> None:
    push = failed_push()
    with receiving([503, 500, 502, 200]) as receiver:
        config = Config(webhooks=(Webhook(url=receiver.url),))
        integrations = Integrations(config, tmp_path, backoff=FAST)
        integrations.start()
        integrations.on_push(push)
        integrations.on_push(push)  # the engine publishes a failed push again as its other clusters settle
        requests = receiver.wait_for(4)
        integrations.stop()
        # Another fluxmon process (here: another instance on the same state folder) decides the same outcome.
        again = Integrations(config, tmp_path, backoff=FAST)
        again.start()
        again.on_push(push)
        again.stop()
        requests = receiver.requests
    assert len(requests) == 4  # three failures, one success, and nothing after it
    assert {r.body for r in requests} == {requests[0].body}  # every retry is the same delivery
    assert {r.headers["Idempotency-Key"] for r in requests} == {idempotency_key(push)}
    [entry] = Outbox(tmp_path).for_push(push.id)
    assert (entry.status, entry.attempts) == (SENT, 4)


def test_backoff_doubles_and_is_bounded() -> None:
    backoff = Backoff(first_seconds=5, max_seconds=60, attempts=6)
    assert [backoff.delay(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, None]


PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from fluxmon.core.config import Config, Webhook
    from fluxmon.core.integrations import Integrations
    from fluxmon.core.outbox import Backoff
    from fluxmon.core.push import combine
    from harness.snapshots import failed_snapshot

    state, url, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    integrations = Integrations(
        Config(webhooks=(Webhook(url=url, secret_env="HOOK_SECRET"),)), state,
        backoff=Backoff(first_seconds=0.01, attempts=5), resume=mode == "resume",
    )
    integrations.start()
    if mode == "decide":
        integrations.on_push(combine([failed_snapshot(context="kind-dev")]))
    integrations.stop()
    """
)


def run_probe(tmp_path: Path, url: str, mode: str) -> None:
    env = {**os.environ, "HOOK_SECRET": SECRET, "PYTHONPATH": str(Path(__file__).parents[1])}
    subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), url, mode], env=env, check=True, timeout=60)


def test_a_restart_between_the_failure_and_the_retry_loses_nothing(tmp_path: Path) -> None:
    """One process decides the outcome and fails to deliver it, and exits; the next one (as the tray at its next
    start) finds it in the outbox and delivers it, signed with the secret it reads itself."""
    with receiving([503, 200]) as receiver:
        run_probe(tmp_path, receiver.url, "decide")
        assert len(receiver.requests) == 1
        [entry] = Outbox(tmp_path).entries()
        assert (entry.status, entry.attempts, entry.last_error) == (PENDING, 1, "HTTP 503")
        run_probe(tmp_path, receiver.url, "resume")
        first, second = receiver.wait_for(2)
    assert second.body == first.body
    assert hmac.compare_digest(second.headers["X-Signature"], signed(second.body, SECRET))
    [entry] = Outbox(tmp_path).entries()
    assert (entry.status, entry.attempts) == (SENT, 2)
    stored = "".join(path.read_text() for path in (tmp_path / "outbox").iterdir())
    assert SECRET not in stored
    assert "s3cr3tpath" not in stored  # the webhook URL (a Slack URL is a credential) is never written


def test_a_server_that_hangs_does_not_hold_the_process_past_its_deadline(tmp_path: Path) -> None:
    """`wait` passes its deadline: the attempt is cut there although the webhook's own timeout is a minute, the
    engine's subscriber returned at once meanwhile, and the delivery stays pending for the tray to retry."""
    with receiving(hang=True) as receiver:
        hook = Webhook(url=receiver.url, timeout_seconds=60)
        integrations = Integrations(Config(webhooks=(hook,)), tmp_path, deadline=time.monotonic() + 1.0, resume=False)
        integrations.start()
        integrations.on_push(failed_push())
        receiver.wait_for(1)  # the worker is now blocked on a server that never answers
        integrations.on_push(deployed_push(id="s2"))  # returns: the engine's thread only enqueues
        integrations.stop(deadline=time.monotonic() + 1.0)
        assert not any(t.name == "fluxmon-integrations" for t in threading.enumerate())
        [entry] = Outbox(tmp_path).for_push("s1")
        assert entry.status == PENDING
        assert "timed out" in entry.last_error


def test_one_claim_per_outcome_across_processes(tmp_path: Path) -> None:
    """Two processes following the same push (the tray, and `wait` in a terminal: other session ids) claim its
    outcome once between them; a different outcome of the same push is its own delivery."""
    with receiving() as receiver:
        config = Config(webhooks=(Webhook(url=receiver.url),))
        tray, terminal = Integrations(config, tmp_path), Integrations(config, tmp_path)
        tray.start()
        terminal.start()
        tray.on_push(failed_push(id="tray-17"))
        terminal.on_push(failed_push(id="cli-4242-1a2b3c4d"))
        tray.stop()
        terminal.stop()
        assert len(receiver.requests) == 1


def test_a_command_runs_without_a_shell_with_the_outcome_and_its_exit_status_is_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "smoke.py"
    script.write_text(
        "import json, os, sys\n"
        "payload = json.load(sys.stdin)\n"
        "print('smoke for', os.environ['FLUXMON_OUTCOME'], os.environ['FLUXMON_SHORT_COMMIT'], payload['commit'])\n"
        "print('$(touch pwned)', os.environ['FLUXMON_SUBJECT'])\n"
        "sys.exit(3)\n"
    )
    repo = tmp_path / "repo"
    repo.mkdir()
    command = OutcomeCommand(run=(sys.executable, str(script)), on=("succeeded",))
    integrations = Integrations(Config(commands=(command,)), tmp_path / "state")
    caplog.set_level(logging.INFO, "fluxmon.integrations")
    integrations.start()
    integrations.on_push(failed_push(repo=str(repo)))  # not an outcome it runs on
    integrations.on_push(deployed_push(id="s2", repo=str(repo), subject="$(touch pwned2)"))
    integrations.stop()
    [entry] = Outbox(tmp_path / "state").entries()
    assert (entry.push_id, entry.status, entry.exit_status) == ("s2", SENT, 3)
    assert f"smoke for succeeded {COMMIT[:7]} {COMMIT}" in caplog.text
    assert not (repo / "pwned").exists()
    assert not (repo / "pwned2").exists()
    assert integrations.records("s2") == [
        {"kind": "command", "target": Path(sys.executable).name, "outcome": "succeeded",
         "status": SENT, "attempts": 1, "exit_status": 3, "error": None}
    ]  # fmt: skip
    # The tray ran it: its end is in the history too, with the push (recorded here after it, as a tray may).
    store = SessionStore(tmp_path / "state")
    store.finish(deployed_push(id="s2", repo=str(repo), subject="$(touch pwned2)"))
    [pushed] = store.history()
    assert [(c["command"], c["result"], c["exit_status"], c["follower"]) for c in pushed["commands"]] == [
        (Path(sys.executable).name, "exited", 3, OWNER)
    ]


def test_a_command_that_runs_too_long_is_killed(tmp_path: Path) -> None:
    command = OutcomeCommand(
        run=(sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"),
        timeout_seconds=0.5,
    )
    integrations = Integrations(Config(commands=(command,)), tmp_path)
    integrations.start()
    integrations.on_push(failed_push())
    integrations.stop(deadline=time.monotonic() + 30)
    [entry] = Outbox(tmp_path).entries()
    assert entry.status == GIVEN_UP
    assert entry.last_error == "timed out after 0.5s"
    assert entry.exit_status is not None
    assert entry.exit_status < 0


def test_bad_targets_are_one_line_each_and_the_others_still_deliver(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A command that is not found, a secret env var that is not set, an unreachable URL: one line each, and the
    good webhook still gets the outcome."""
    caplog.set_level(logging.INFO, "fluxmon")
    with receiving() as receiver:
        config = Config(
            webhooks=(
                Webhook(url="http://127.0.0.1:9/unreachable/token-in-path"),
                Webhook(url=receiver.url + "/signed", secret_env="UNSET_SECRET"),
                Webhook(url=receiver.url),
            ),
            commands=(OutcomeCommand(run=("./scripts/no-such-smoke.sh",)),),
        )
        integrations = Integrations(config, tmp_path, backoff=Backoff(attempts=1), environ={})
        integrations.start()
        integrations.on_push(failed_push(repo=str(tmp_path)))
        integrations.stop()
        [request] = receiver.wait_for(1)
    assert "/signed" not in request.path  # never sent unsigned
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("secret_env UNSET_SECRET is not set" in line for line in errors), errors
    assert any("command not found: ./scripts/no-such-smoke.sh" in line for line in errors), errors
    assert any(line.startswith("webhook http://127.0.0.1:9/…") and "given up" in line for line in errors), errors
    assert all("\n" not in line for line in errors)
    assert "token-in-path" not in caplog.text
    assert "s3cr3tpath" not in caplog.text
    statuses = sorted((e.kind, e.status) for e in Outbox(tmp_path).entries())
    assert statuses == [("command", GIVEN_UP), ("webhook", GIVEN_UP), ("webhook", GIVEN_UP), ("webhook", SENT)]


def write_user_config(tmp_path: Path, text: str) -> dict[str, str]:
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    path = tmp_path / "config" / "fluxmon" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return env


def test_config_reads_webhooks_commands_and_the_feed(tmp_path: Path) -> None:
    env = write_user_config(
        tmp_path,
        textwrap.dedent(
            """
            feed_listen = "127.0.0.1:8765"
            [[webhook]]
            url = "https://hooks.slack.com/services/T0/B0/xyz"
            format = "slack"
            on = ["failed"]
            [[webhook]]
            url = "https://ci.example.com/flux"
            secret_env = "FLUXMON_WEBHOOK_SECRET"
            timeout = "30s"
            [[command]]
            run = ["./scripts/smoke.sh", "--env", "staging"]
            on = ["succeeded"]
            """
        ),
    )
    config = load_config(environ=env)
    assert config.warnings == ()
    assert config.integration_problems == ()
    slack, generic = config.webhooks
    assert (slack.format, slack.on, slack.shown) == ("slack", ("failed",), "https://hooks.slack.com/…")
    assert (generic.secret_env, generic.timeout_seconds, generic.on) == (
        "FLUXMON_WEBHOOK_SECRET", 30.0, ("succeeded", "failed", "timed-out")
    )  # fmt: skip
    assert config.commands == (OutcomeCommand(run=("./scripts/smoke.sh", "--env", "staging"), on=("succeeded",)),)
    assert config.feed_listen == "127.0.0.1:8765"
    assert "xyz" not in repr(config)  # the URL is a credential: not in reprs (logs of a config)
    assert "xyz" not in json.dumps(config.as_record())


def test_a_bad_table_is_left_out_alone_in_one_line(tmp_path: Path) -> None:
    env = write_user_config(
        tmp_path,
        textwrap.dedent(
            """
            timeout = "2m"
            feed_listen = "localhost:http"
            [[webhook]]
            url = "https://hooks.example.com/ok"
            [[webhook]]
            url = "https://hooks.example.com/x"
            format = "discord"
            [[webhook]]
            url = "htps//hooks.example.com/secret-token"
            [[webhook]]
            url = "https://hooks.example.com/y"
            secret = "inline"
            [[command]]
            run = "./smoke.sh && deploy"
            [[webhook]]
            url = "https://hooks.example.com/z"
            secret_file = "secret.txt"
            """
        ),
    )
    config = load_config(environ=env)
    assert config.timeout_seconds == 120  # the rest of the file applies
    assert [w.url for w in config.webhooks] == ["https://hooks.example.com/ok"]
    assert config.feed_listen == ""
    problems = config.integration_problems
    assert len(problems) == 6, problems
    assert "feed_listen: expected host:port such as 127.0.0.1:8765, got 'localhost:http'" in problems[0]
    assert "webhook #2: format: expected one of json, slack, teams, got 'discord'" in problems[1]
    assert "webhook #3: url: expected an http:// or https:// URL" in problems[2]
    assert "secret-token" not in problems[2]
    assert "never the secret itself in the file" in problems[3]
    assert "command #1: run: expected a list" in problems[5]
    assert "webhook #5: secret_file: expected an absolute path or one starting with ~" in problems[4]
    assert all("\n" not in line for line in problems)


def test_a_repository_may_not_set_integrations(tmp_path: Path) -> None:
    env = write_user_config(tmp_path, "")
    (tmp_path / ".fluxmon.toml").write_text('[[command]]\nrun = ["curl", "evil.example"]\n', encoding="utf-8")
    config = load_config(repo=tmp_path, environ=env)
    assert config.commands == ()
    [warning] = config.warnings
    assert "command: only your own config.toml may set integrations" in warning


def test_a_command_still_running_when_fluxmon_stops_is_stopped_with_it(tmp_path: Path) -> None:
    """The tray quitting must not wait out a five-minute smoke test, nor leave it running alone."""
    with receiving() as receiver:
        started = (
            f"import time, urllib.request; urllib.request.urlopen(urllib.request.Request({receiver.url!r}, data=b'x'));"
            " time.sleep(120)"
        )
        command = OutcomeCommand(run=(sys.executable, "-c", started), timeout_seconds=300)
        integrations = Integrations(Config(commands=(command,)), tmp_path)
        integrations.start()
        integrations.on_push(failed_push())
        receiver.wait_for(1)  # the command is running
        integrations.stop(deadline=time.monotonic() + 0.5)
    [entry] = Outbox(tmp_path).entries()
    assert (entry.status, entry.last_error) == (GIVEN_UP, "cut short: fluxmon stopped")


def test_claims_racing_at_the_same_moment_give_exactly_one_winner(tmp_path: Path) -> None:
    entry = Entry(kind="webhook", target="t", shown="s", key="k:failed", push_id="p", outcome="failed", body="{}",
                  variables={}, workdir=str(tmp_path), created_at=1.0)  # fmt: skip
    outboxes = [Outbox(tmp_path) for _ in range(8)]  # as many processes' views of one folder
    start = threading.Barrier(len(outboxes))
    results: list[bool] = []

    def claim(outbox: Outbox) -> None:
        start.wait(timeout=10)
        results.append(outbox.claim(entry))

    threads = [threading.Thread(target=claim, args=(outbox,), name=f"test-claim-{i}") for i, outbox in
               enumerate(outboxes)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == [False] * 7 + [True]
    assert [path.name for path in (tmp_path / "outbox").iterdir()] == [entry.name]  # no temporary file left


def test_wait_does_not_spin_on_an_entry_another_process_left_due(tmp_path: Path) -> None:
    """`wait` delivers its own outcomes only; one the tray left pending (and due) must not keep it busy."""
    spinning = threading.Event()

    class CountingOutbox(Outbox):
        looks = 0

        def next_due(self, names: Collection[str] | None = None) -> float | None:
            CountingOutbox.looks += 1
            if CountingOutbox.looks > 20:
                spinning.set()
            return super().next_due(names)

    foreign = Entry(kind="webhook", target="elsewhere", shown="s", key="other:failed", push_id="tray-1",
                    outcome="failed", body="{}", variables={}, workdir=str(tmp_path), created_at=1.0)  # fmt: skip
    assert Outbox(tmp_path).claim(foreign)
    with receiving() as receiver:
        integrations = Integrations(Config(webhooks=(Webhook(url=receiver.url),)), tmp_path, resume=False)
        integrations.outbox = CountingOutbox(tmp_path)
        integrations.start()
        integrations.on_push(failed_push())
        receiver.wait_for(1)
        try:
            assert not spinning.wait(1.0), f"looked at the outbox {CountingOutbox.looks} times"
        finally:
            integrations.stop()
    assert Outbox(tmp_path).for_push("tray-1")[0].status == PENDING  # not its to deliver
