"""Settings: defaults, user config, the seed's per-repo YAML and our own per-repo TOML, in that order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxmon.core.config import Config, load_config, parse_duration


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "config")}


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_defaults_without_any_file(tmp_path: Path, env: dict[str, str]) -> None:
    config = load_config(repo=tmp_path, environ=env)
    assert config == Config()
    assert config.warnings == ()


def test_precedence_user_then_seed_yaml_then_repo_toml(tmp_path: Path, env: dict[str, str]) -> None:
    write(
        Path(env["XDG_CONFIG_HOME"]) / "fluxmon" / "config.toml",
        'context = "prod"\ntimeout = "10m"\nverbosity = "minimal"\n',
    )
    write(
        tmp_path / ".kiro/hooks/flux-reconciliation-monitor.yaml",
        "name: Flux Reconciliation Monitor\nenabled: true\nconfig:\n  timeout: 120\n  verbosity: verbose\n"
        "  monitor_types: [kustomization, HelmReleases]\n  unknown_seed_key: ignored\n",
    )
    write(tmp_path / ".fluxmon.toml", 'verbosity = "normal"\n')
    config = load_config(repo=tmp_path, environ=env)
    assert config.context == "prod"  # user file
    assert config.timeout_seconds == 120  # seed file beats the user file
    assert config.monitor_types == ("Kustomization", "HelmRelease")
    assert config.verbosity == "normal"  # repo TOML beats both
    assert config.warnings == ()


def test_seed_file_can_disable_a_repo(tmp_path: Path, env: dict[str, str]) -> None:
    write(tmp_path / ".kiro/hooks/flux-reconciliation-monitor.yaml", "enabled: false\n")
    assert load_config(repo=tmp_path, environ=env).enabled is False


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('timeout = "soon"\n', "timeout: expected a duration"),
        ('verbosity = "loud"\n', "verbosity: expected one of minimal, normal, verbose"),
        ("reconcile = 1\n", "reconcile: expected true or false"),
        ('monitor_types = ["Deployment"]\n', "monitor_types: unknown kinds ['Deployment']"),
        ('colour = "blue"\n', "unknown key 'colour'"),
        ("timeout = \n", "Invalid value"),
    ],
)
def test_an_invalid_file_is_named_with_its_key_and_skipped(
    tmp_path: Path, env: dict[str, str], text: str, problem: str
) -> None:
    path = tmp_path / ".fluxmon.toml"
    write(path, 'context = "kept-out"\n' + text)
    config = load_config(repo=tmp_path, environ=env)
    (warning,) = config.warnings
    assert warning.startswith(f"{path}: ")
    assert problem in warning
    assert config.context == ""  # the whole file is skipped, not half-applied


def test_ignore_patterns_match_remotes_and_branches() -> None:
    config = Config(ignore_remotes=("*acme/scratch*",), ignore_branches=("wip/*",))
    assert config.ignores(remote_url="git@github.com:acme/scratch.git", branch="main")
    assert config.ignores(remote_url="git@github.com:acme/fleet.git", branch="wip/try")
    assert not config.ignores(remote_url="git@github.com:acme/fleet.git", branch="main")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(300, 300), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("45", 45), ("7d", 604800), ("1d12h", 129600)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5 minutes", -1, 0, True, "1w", "d"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


# --- which clusters ----------------------------------------------------------------------------------------------


def user_config(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "fluxmon" / "config.toml"


def test_contexts_and_the_kubeconfig_file_of_a_context(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", env["HOME"])
    write(
        user_config(env),
        'contexts = ["dev", "staging", "prod"]\n[kubeconfigs]\nprod = "~/.kube/prod.yaml"\n"eu.west" = "/srv/eu.kc"\n',
    )
    config = load_config(environ=env)
    assert config.warnings == ()
    assert (config.context, config.contexts) == ("", ("dev", "staging", "prod"))
    assert config.kubeconfig_for("prod") == f"{env['HOME']}/.kube/prod.yaml"  # ~ expanded
    assert config.kubeconfig_for("eu.west") == "/srv/eu.kc"
    assert config.kubeconfig_for("dev") is None  # the usual, merged kubeconfig
    record = json.loads(json.dumps(config.as_record()))
    assert record["contexts"] == ["dev", "staging", "prod"]
    assert record["kubeconfigs"] == {"prod": f"{env['HOME']}/.kube/prod.yaml", "eu.west": "/srv/eu.kc"}


def test_context_and_contexts_are_one_setting_that_a_later_file_replaces(tmp_path: Path, env: dict[str, str]) -> None:
    write(user_config(env), 'contexts = ["dev", "prod"]\n')
    write(tmp_path / ".fluxmon.toml", 'context = "dev"\n')  # this repo deploys to dev only
    config = load_config(repo=tmp_path, environ=env)
    assert (config.context, config.contexts) == ("dev", ())
    write(user_config(env), 'context = "dev"\n')
    write(tmp_path / ".fluxmon.toml", 'contexts = ["dev", "prod"]\n')
    config = load_config(repo=tmp_path, environ=env)
    assert (config.context, config.contexts) == ("", ("dev", "prod"))


def test_a_repository_may_not_choose_a_kubeconfig_file(tmp_path: Path, env: dict[str, str]) -> None:
    """A kubeconfig can run commands (exec credential plugins): a cloned repo must not point fluxmon at its own."""
    write(user_config(env), 'contexts = ["dev"]\n')
    write(tmp_path / ".fluxmon.toml", 'contexts = ["prod"]\n[kubeconfigs]\nprod = "/tmp/repo-supplied.kc"\n')
    config = load_config(repo=tmp_path, environ=env)
    (warning,) = config.warnings
    assert warning.startswith(f"{tmp_path / '.fluxmon.toml'}: kubeconfigs: only your own config.toml may name")
    assert (config.contexts, config.kubeconfigs) == (("dev",), ())  # the repo's file is skipped as a whole


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('contexts = "dev"\n', "contexts: expected a list of strings"),
        ('contexts = ["dev", ""]\n', "contexts: a context name must not be empty"),
        ('context = "dev"\ncontexts = ["prod"]\n', "set either context (one) or contexts (a list), not both"),
        ('kubeconfigs = ["~/.kube/prod"]\n', 'kubeconfigs: expected a table of context = "kubeconfig file"'),
        ("[kubeconfigs]\nprod = 1\n", "kubeconfigs: prod: expected the path of a kubeconfig file, got 1"),
        ('[kubeconfigs]\nprod = "kube/prod"\n', "kubeconfigs: prod: expected an absolute path or one starting with ~"),
    ],
)
def test_an_invalid_cluster_setting_is_one_line_and_the_file_skipped(
    env: dict[str, str], text: str, problem: str
) -> None:
    write(user_config(env), text)
    config = load_config(environ=env)
    (warning,) = config.warnings
    assert warning.startswith(f"{user_config(env)}: ")
    assert problem in warning
    assert "\n" not in warning
    assert (config.context, config.contexts, config.kubeconfigs) == ("", (), ())
