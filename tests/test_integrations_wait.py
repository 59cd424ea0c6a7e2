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
