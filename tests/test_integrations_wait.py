"""`fluxmon wait` hands its push's outcome on (#14), as a real process against the fleet: a webhook that hangs
costs it no more than the webhook's own timeout (the delivery stays in the outbox for the tray), and a smoke-test
command runs on success with the outcome in its environment and the JSON payload on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from fluxmon.core.outbox import PENDING, SENT, Outbox
from fluxmon.core.store import HISTORY_FILE
from tests.fleet import SCALE_WEB, Fleet
from tests.receiver import receiving


def test_wait_hands_the_outcome_on_and_a_hanging_webhook_does_not_hold_it(fleet: Fleet, tmp_path: Path) -> None:
    smoke = tmp_path / "smoke.py"
    smoke.write_text(
        "import json, os, pathlib, sys\n"
        "payload = json.load(sys.stdin)\n"
        "pathlib.Path(sys.argv[1]).write_text(json.dumps([os.environ['FLUXMON_OUTCOME'],"
        " os.environ['FLUXMON_COMMIT'], payload['commit'], os.getcwd()]))\n"
    )
    ran = tmp_path / "ran.json"
    with receiving(hang=True) as receiver:
        config = Path(fleet.env["XDG_CONFIG_HOME"]) / "fluxmon" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            textwrap.dedent(
                f"""
                [[webhook]]
                url = "{receiver.url}"
                timeout = "2s"
                [[command]]
                run = [{json.dumps(sys.executable)}, {json.dumps(str(smoke))}, {json.dumps(str(ran))}]
                on = ["succeeded"]
                """
            )
        )
        sha = fleet.push(SCALE_WEB, "scale web")
        result = subprocess.run(
            [
                sys.executable, "-m", "fluxmon", "wait", "--repo", str(fleet.work), "--kubeconfig",
                str(fleet.cluster.kubeconfig), "--timeout", "60s",
            ],
            env=fleet.env, capture_output=True, text=True, timeout=90, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        [request] = receiver.requests  # it arrived, and was never answered: the server still hangs
        assert json.loads(request.body)["commit"] == sha
    assert json.loads(ran.read_text()) == ["succeeded", sha, sha, str(fleet.work)]
    entries = {entry.kind: entry for entry in Outbox(Path(fleet.env["XDG_STATE_HOME"]) / "fluxmon").entries()}
    assert (entries["command"].status, entries["command"].exit_status) == (SENT, 0)
    assert entries["webhook"].status == PENDING  # left for the tray to retry
    assert "timed out" in entries["webhook"].last_error
    assert "s3cr3tpath" not in result.stderr


def test_each_commands_result_is_in_the_history_of_the_push_it_ran_for(fleet: Fleet, tmp_path: Path) -> None:
    """#14 item 2: "the exit status recorded in the session's history". `wait` runs the commands before it records
    the push; `fluxmon history --json` still shows each one's end with that push: an exit status, a program not
    found, one killed at its timeout."""
    failing = tmp_path / "smoke.py"
    failing.write_text("import sys\nprint('smoke: 2 checks failed')\nsys.exit(3)\n")
    config = Path(fleet.env["XDG_CONFIG_HOME"]) / "fluxmon" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    python = json.dumps(sys.executable)
    config.write_text(
        textwrap.dedent(
            f"""
            [[command]]
            run = [{python}, {json.dumps(str(failing))}, "https://user:s3cr3t@ci.example.com/hook"]
            on = ["succeeded"]
            [[command]]
            run = ["fluxmon-no-such-smoke-test"]
            on = ["succeeded"]
            [[command]]
            run = [{python}, "-c", "import time; time.sleep(60)"]
            on = ["succeeded"]
            timeout = "1s"
            [[command]]
            run = [{python}, "-c", "pass"]
            on = ["failed"]
            """
        )
    )
    sha = fleet.push(SCALE_WEB, "scale web")
    waited = subprocess.run(
        [
            sys.executable, "-m", "fluxmon", "wait", "--repo", str(fleet.work), "--kubeconfig",
            str(fleet.cluster.kubeconfig), "--timeout", "60s",
        ],
        env=fleet.env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "fluxmon", "history", "--json"],
        env=fleet.env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    [push] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (push["commit"], push["state"]) == (sha, "succeeded")
    ran = {command["run"][-1]: command for command in push["commands"]}
    assert len(push["commands"]) == 3  # the one `on = ["failed"]` did not run
    smoke = ran["https://***@ci.example.com/hook"]  # the URL's credentials are not kept
    assert (smoke["command"], smoke["result"], smoke["exit_status"]) == (Path(sys.executable).name, "exited", 3)
    assert (smoke["outcome"], smoke["follower"]) == ("succeeded", "wait")
    missing = ran["fluxmon-no-such-smoke-test"]
    assert (missing["result"], missing["exit_status"]) == ("not-found", None)
    assert "command not found" in missing["error"]
    slow = ran["import time; time.sleep(60)"]
    assert (slow["result"], slow["exit_status"]) == ("timed-out", None)
    assert "s3cr3t" not in shown.stdout
    assert "s3cr3t" not in (Path(fleet.env["XDG_STATE_HOME"]) / "fluxmon" / HISTORY_FILE).read_text()
    table = subprocess.run(
        [sys.executable, "-m", "fluxmon", "history"],
        env=fleet.env, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    [row] = [line for line in table.stdout.splitlines() if sha[:7] in line]
    mark = row.partition(" · commands: ")[2].split(", ")
    assert sorted(mark) == sorted(
        [
            f"{Path(sys.executable).name} exit 3",
            "fluxmon-no-such-smoke-test not found",
            f"{Path(sys.executable).name} timed out",
        ]
    )
