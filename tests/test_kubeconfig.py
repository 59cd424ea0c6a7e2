"""Which clusters: kubeconfig files merged as kubectl merges them, and the targets the flags and config name.

The merge rules are client-go's (`tools/clientcmd/loader.go`) and the kubectl docs' ("Organizing Cluster Access
Using kubeconfig Files", merging rules); core/kubeconfig.py cites both. Real files, the real kubernetes client, and
the simulated API server (or the real kube-apiserver) at the other end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxmon.cli import build_parser
from fluxmon.core.cluster import ClusterTarget, FluxNotInstalled, KubeconfigError, Unauthorized
from fluxmon.core.config import Config
from fluxmon.core.errors import InputError
from fluxmon.core.kube import Cluster
from fluxmon.core.kubeconfig import (
    current_context,
    kube_contexts,
    kubeconfig_files,
    load_kubeconfig,
    resolve_targets,
)
from fluxmon.sim.apiserver import SimApiServer
from fluxmon.sim.client import KubeClient
from fluxmon.sim.cluster import install_crds
from tests import clusters

KINDS = ("Kustomization",)
UNREACHABLE = "http://127.0.0.1:9"


def kubeconfig(
    path: Path,
    *,
    contexts: Mapping[str, str] = {},
    current: str | None = None,
    clusters: Mapping[str, Mapping[str, Any]] | None = None,
    users: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write a kubeconfig: each context `name -> server` gets a cluster and a user of its own name, unless
    `clusters`/`users` give the entries outright."""
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": dict(body)}
            for name, body in (clusters or {name: {"server": server} for name, server in contexts.items()}).items()
        ],
        "users": [{"name": name, "user": dict(body)} for name, body in (users or {n: {} for n in contexts}).items()],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}} for name in contexts],
    }
    if current is not None:
        document["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def joined(*paths: Path) -> str:
    return os.pathsep.join(str(path) for path in paths)


@pytest.fixture
def flux_server() -> Iterator[SimApiServer]:
    """A simulated cluster with the Flux CRDs: `discover` succeeds only on it."""
    server = SimApiServer()
    server.start()
    try:
        install_crds(KubeClient(server.url), only=KINDS)
        yield server
    finally:
        server.stop()


def discovered_on(target: Cluster) -> str:
    """Ask the cluster for its Flux kinds (a real request); the server that answered."""
    try:
        assert set(target.discover(KINDS)) == set(KINDS)
        return target.server
    finally:
        target.close()


# --- which files -------------------------------------------------------------------------------------------------


def test_the_files_come_from_the_flag_else_kubeconfig_else_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "KUBECONFIG": f"a{os.pathsep}{os.pathsep}b{os.pathsep}a"}
    assert kubeconfig_files("only", env) == (Path("only"),)  # --kubeconfig: that file alone
    assert kubeconfig_files(None, env) == (Path("a"), Path("b"))  # empty names ignored, `a` read once
    assert kubeconfig_files(None, {"HOME": str(tmp_path)}) == (tmp_path / ".kube" / "config",)


# --- the merge ---------------------------------------------------------------------------------------------------


def test_a_context_in_the_second_file_is_followed(
    tmp_path: Path, flux_server: SimApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug of #13: only the first file of KUBECONFIG was read, so `prod` was "unknown"."""
    dev = kubeconfig(tmp_path / "dev.kc", contexts={"dev": UNREACHABLE}, current="dev")
    prod = kubeconfig(tmp_path / "prod.kc", contexts={"prod": flux_server.url}, current="prod")
    monkeypatch.setenv("KUBECONFIG", joined(dev, prod))
    assert discovered_on(Cluster.connect(context="prod")) == flux_server.url


def test_current_context_comes_from_the_first_file_that_sets_it(
    tmp_path: Path, flux_server: SimApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubectl keeps the first current-context; the kubernetes client's own merger takes the last one."""
    unset = kubeconfig(tmp_path / "unset.kc", contexts={"other": UNREACHABLE})
    first = kubeconfig(tmp_path / "first.kc", contexts={"here": flux_server.url}, current="here")
    last = kubeconfig(tmp_path / "last.kc", contexts={"there": UNREACHABLE}, current="there")
    monkeypatch.setenv("KUBECONFIG", joined(unset, first, last))
    assert current_context(None) == "here"
    assert discovered_on(Cluster.connect()) == flux_server.url


def test_the_first_file_to_define_a_name_wins_whole(tmp_path: Path) -> None:
    """Nothing of the second `shared` is kept, not even the key the first one lacks."""
    first = kubeconfig(
        tmp_path / "a.kc",
        contexts={"shared": ""},
        clusters={"shared": {"server": "https://first.example"}},
        users={"shared": {"token": "first"}},
    )
    second = kubeconfig(
        tmp_path / "b.kc",
        contexts={"shared": ""},
        clusters={"shared": {"server": "https://second.example", "certificate-authority": "/ca.crt"}},
        users={"shared": {"token": "second", "client-key": "/key.pem"}},
    )
    merged = load_kubeconfig(None, environ={"KUBECONFIG": joined(first, second)}).document
    assert merged["clusters"] == [{"name": "shared", "cluster": {"server": "https://first.example"}}]
    assert merged["users"] == [{"name": "shared", "user": {"token": "first"}}]
    assert [context["name"] for context in merged["contexts"]] == ["shared"]


def test_a_context_may_take_its_cluster_and_user_from_other_files(
    tmp_path: Path, flux_server: SimApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual split: a file of clusters, a file of users (credentials kept apart), a file of contexts."""
    clusters = tmp_path / "clusters.kc"
    clusters.write_text(yaml.safe_dump({"clusters": [{"name": "c", "cluster": {"server": flux_server.url}}]}))
    users = tmp_path / "users.kc"
    users.write_text(yaml.safe_dump({"users": [{"name": "u", "user": {}}]}))
    contexts = tmp_path / "contexts.kc"
    contexts.write_text(yaml.safe_dump({"contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", joined(contexts, users, clusters))
    assert discovered_on(Cluster.connect(context="x")) == flux_server.url
    monkeypatch.setenv("KUBECONFIG", joined(contexts, users))
    with pytest.raises(KubeconfigError) as raised:
        Cluster.connect(context="x")
    assert raised.value.message == f"{joined(contexts, users)} has no cluster 'c', which context 'x' names"


def test_missing_files_are_skipped_and_empty_files_ignored(
    tmp_path: Path, flux_server: SimApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The python client's merger raises on an empty file; kubectl reads it as an empty config."""
    empty = tmp_path / "empty.kc"
    empty.write_text("", encoding="utf-8")
    comments = tmp_path / "comments.kc"
    comments.write_text("# nothing yet\n", encoding="utf-8")
    real = kubeconfig(tmp_path / "real.kc", contexts={"real": flux_server.url}, current="real")
    monkeypatch.setenv("KUBECONFIG", joined(tmp_path / "missing.kc", empty, comments, real))
    assert kube_contexts(None) == ("real",)
    assert discovered_on(Cluster.connect()) == flux_server.url


def test_relative_files_are_found_from_the_folder_of_the_file_that_names_them(tmp_path: Path) -> None:
    """certificate-authority, client-certificate, client-key, tokenFile, and exec.command only with a `/`."""
    here = tmp_path / "here"
    there = tmp_path / "there"
    kubeconfig(here / "kc", contexts={"a": ""}, clusters={"a": {"server": "https://a", "certificate-authority": "ca"}})
    kubeconfig(
        there / "kc",
        contexts={"b": ""},
        clusters={"b": {"server": "https://b", "certificate-authority": "/etc/ca.crt"}},
        users={
            "b": {
                "client-certificate": "certs/b.crt",
                "client-key": "./certs/../certs/b.key",
                "tokenFile": "token",
                "exec": {"command": "bin/get-token", "apiVersion": "client.authentication.k8s.io/v1"},
            },
            "path-exec": {"exec": {"command": "aws", "args": ["eks", "get-token"]}},
        },
    )
    merged = load_kubeconfig(None, environ={"KUBECONFIG": joined(here / "kc", there / "kc")}).document
    clusters = {entry["name"]: entry["cluster"] for entry in merged["clusters"]}
    users = {entry["name"]: entry["user"] for entry in merged["users"]}
    assert clusters["a"]["certificate-authority"] == str(here / "ca")
    assert clusters["b"]["certificate-authority"] == "/etc/ca.crt"  # absolute stays
    assert users["b"]["client-certificate"] == str(there / "certs" / "b.crt")
    assert users["b"]["client-key"] == str(there / "certs" / "b.key")
    assert users["b"]["tokenFile"] == str(there / "token")
    assert users["b"]["exec"]["command"] == str(there / "bin" / "get-token")
    assert users["path-exec"]["exec"]["command"] == "aws"  # looked up on PATH, as kubectl does


def test_a_relative_token_file_of_the_second_kubeconfig_is_read_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: a server that checks tokens accepts the one read from `tokenFile: token` beside prod.kc."""
    server = SimApiServer(tokens={"prod-token": "alice"})
    server.start()
    try:
        install_crds(KubeClient(server.url, token="prod-token"), only=KINDS)
        (tmp_path / "prod").mkdir()
        (tmp_path / "prod" / "token").write_text("prod-token\n", encoding="utf-8")
        dev = kubeconfig(tmp_path / "dev" / "kc", contexts={"dev": UNREACHABLE}, current="dev")
        prod = kubeconfig(
            tmp_path / "prod" / "kc",
            contexts={"prod": ""},
            clusters={"prod": {"server": server.url}},
            users={"prod": {"tokenFile": "token"}},
        )
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")  # relative to the kubeconfig, not to where fluxmon runs
        monkeypatch.setenv("KUBECONFIG", joined(dev, prod))
        assert discovered_on(Cluster.connect(context="prod")) == server.url
        kubeconfig(prod, contexts={"prod": ""}, clusters={"prod": {"server": server.url}})  # no token now
        with pytest.raises(Unauthorized):
            discovered_on(Cluster.connect(context="prod"))
    finally:
        server.stop()


def test_the_second_file_reaches_each_kind_of_api_server(
    cluster: clusters.Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the real kube-apiserver too: TLS with the second file's relative CA, and its relative token file."""
    files = tmp_path / "prod"
    files.mkdir()
    body: dict[str, Any] = {"server": cluster.url}
    user: dict[str, Any] = {}
    if cluster.ca_data:
        (files / "ca.crt").write_bytes(cluster.ca_data)
        body["certificate-authority"] = "ca.crt"
    if cluster.admin_token:
        (files / "token").write_text(cluster.admin_token, encoding="utf-8")
        user["tokenFile"] = "token"
    dev = kubeconfig(tmp_path / "dev.kc", contexts={"dev": UNREACHABLE}, current="dev")
    prod = kubeconfig(files / "kc", contexts={"prod": ""}, clusters={"prod": body}, users={"prod": user})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", joined(dev, prod))
    target = Cluster.connect(context="prod")
    try:
        with pytest.raises(FluxNotInstalled, match="in context 'prod'"):  # it answered: no Flux there
            target.discover(KINDS)
    finally:
        target.close()


# --- errors: one line, naming the files and the contexts ----------------------------------------------------------


def test_an_unknown_context_names_every_file_and_every_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = kubeconfig(tmp_path / "dev.kc", contexts={"dev": UNREACHABLE}, current="dev")
    prod = kubeconfig(tmp_path / "prod.kc", contexts={"prod": UNREACHABLE})
    monkeypatch.setenv("KUBECONFIG", joined(dev, tmp_path / "gone.kc", prod))
    with pytest.raises(KubeconfigError) as raised:
        Cluster.connect(context="staging")
    assert raised.value.message == (
        f"{dev}{os.pathsep}{prod} has no context 'staging' (its contexts: dev, prod); "
        f"not found, so skipped: {tmp_path / 'gone.kc'}"
    )


def test_a_name_given_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    """client-go refuses it (api/v1/conversion.go: duplicate name in list); only across files does the first win."""
    path = tmp_path / "kc"
    path.write_text("contexts:\n- name: a\n  context: {cluster: x}\n- name: a\n  context: {cluster: y}\n")
    with pytest.raises(KubeconfigError, match=f"^{path} is not a valid kubeconfig: two contexts are named 'a'$"):
        load_kubeconfig(str(path))


def test_a_broken_file_anywhere_in_the_list_is_named(tmp_path: Path) -> None:
    good = kubeconfig(tmp_path / "good.kc", contexts={"dev": UNREACHABLE}, current="dev")
    bad = tmp_path / "bad.kc"
    bad.write_text("contexts: [oops\n", encoding="utf-8")
    with pytest.raises(KubeconfigError, match=f"^{bad} is not a valid kubeconfig: line 2, column 1"):
        load_kubeconfig(None, environ={"KUBECONFIG": joined(good, bad)})


def test_kubeconfig_flag_takes_one_file_and_says_how_to_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl's --kubeconfig takes one file; `a:b` is a file of that name, and the error says what to do."""
    dev = kubeconfig(tmp_path / "dev.kc", contexts={"dev": UNREACHABLE}, current="dev")
    prod = kubeconfig(tmp_path / "prod.kc", contexts={"prod": UNREACHABLE})
    monkeypatch.setenv("KUBECONFIG", str(prod))  # the flag wins over KUBECONFIG
    assert kube_contexts(str(dev)) == ("dev",)
    with pytest.raises(KubeconfigError, match=r"--kubeconfig takes one file.*set KUBECONFIG="):
        Cluster.connect(kubeconfig=joined(dev, prod))


def test_a_kubeconfig_of_empty_files_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty.kc"
    empty.write_text("", encoding="utf-8")
    monkeypatch.setenv("KUBECONFIG", str(empty))
    with pytest.raises(KubeconfigError, match="is not a valid kubeconfig: it is empty"):
        Cluster.connect()


def test_no_current_context_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = kubeconfig(tmp_path / "kc", contexts={"dev": UNREACHABLE, "prod": UNREACHABLE})
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(KubeconfigError, match=r"sets no current-context: name one with --context \(its contexts: dev"):
        Cluster.connect()


# --- listing -----------------------------------------------------------------------------------------------------


def test_every_context_is_listed_in_file_order(tmp_path: Path) -> None:
    first = kubeconfig(tmp_path / "a.kc", contexts={"zeta": "", "alpha": ""})
    second = kubeconfig(tmp_path / "b.kc", contexts={"alpha": "", "mid": ""}, current="mid")
    env = {"KUBECONFIG": joined(first, second)}
    assert kube_contexts(None, environ=env) == ("zeta", "alpha", "mid")
    assert current_context(None, environ=env) == "mid"
    with pytest.raises(KubeconfigError, match="no kubeconfig at"):
        kube_contexts(str(tmp_path / "nowhere"))


# --- the targets -------------------------------------------------------------------------------------------------


def targets(
    *flags: str,
    all_contexts: bool = False,
    kubeconfig: str | None = None,
    config: Config | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[ClusterTarget, ...]:
    return resolve_targets(
        flag_contexts=flags,
        all_contexts=all_contexts,
        kubeconfig=kubeconfig,
        config=config or Config(),
        environ=env or {},
    )


def test_the_default_is_the_current_context_alone() -> None:
    assert targets() == (ClusterTarget(),)
    assert targets(kubeconfig="/k") == (ClusterTarget(kubeconfig="/k"),)


def test_flags_win_over_config() -> None:
    config = Config(contexts=("dev", "staging"))
    assert targets("prod", config=config) == (ClusterTarget(context="prod"),)
    assert targets(config=config) == (ClusterTarget(context="dev"), ClusterTarget(context="staging"))
    assert targets(config=Config(context="dev")) == (ClusterTarget(context="dev"),)


def test_duplicates_are_dropped_and_the_order_kept() -> None:
    assert targets("prod", "dev", "prod", "dev") == (ClusterTarget(context="prod"), ClusterTarget(context="dev"))


def test_a_context_is_read_from_the_file_config_names_for_it_unless_the_flag_names_one() -> None:
    config = Config(contexts=("dev", "prod"), kubeconfigs=(("prod", "/home/me/.kube/prod.yaml"),))
    assert targets(config=config) == (
        ClusterTarget(context="dev"),
        ClusterTarget(context="prod", kubeconfig="/home/me/.kube/prod.yaml"),
    )
    assert targets(config=config, kubeconfig="/k") == (
        ClusterTarget(context="dev", kubeconfig="/k"),
        ClusterTarget(context="prod", kubeconfig="/k"),
    )


def test_all_contexts_takes_every_context_of_the_merged_kubeconfig(tmp_path: Path) -> None:
    dev = kubeconfig(tmp_path / "dev.kc", contexts={"dev": "", "staging": ""}, current="dev")
    prod = kubeconfig(tmp_path / "prod.kc", contexts={"prod": "", "dev": ""})
    env = {"KUBECONFIG": joined(dev, prod)}
    assert targets(all_contexts=True, config=Config(contexts=("other",)), env=env) == (
        ClusterTarget(context="dev"),
        ClusterTarget(context="staging"),
        ClusterTarget(context="prod"),
    )
    assert targets(all_contexts=True, kubeconfig=str(prod), env=env) == (
        ClusterTarget(context="prod", kubeconfig=str(prod)),
        ClusterTarget(context="dev", kubeconfig=str(prod)),
    )
    empty = tmp_path / "empty.kc"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(KubeconfigError, match=r"--all-contexts: .* has no contexts"):
        targets(all_contexts=True, kubeconfig=str(empty))


def test_all_contexts_with_context_is_a_usage_error() -> None:
    with pytest.raises(InputError, match=r"^--all-contexts already takes every context: drop --context"):
        targets("dev", all_contexts=True)


# --- the command line --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["wait", "watch", "tray"])
def test_context_repeats_and_all_contexts_is_a_flag(verb: str) -> None:
    args = build_parser().parse_args([verb, "--context", "dev", "--context", "prod"])
    assert (args.contexts, args.all_contexts) == (["dev", "prod"], False)
    args = build_parser().parse_args([verb, "--all-contexts"])
    assert (args.contexts, args.all_contexts) == (None, True)


def fluxmon_wait(tmp_path: Path, *flags: str, kubeconfigs: str) -> subprocess.CompletedProcess[str]:
    """`fluxmon wait` on a made-up push, with KUBECONFIG set and the user's own config kept out."""
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfigs,
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fluxmon",
            "wait",
            "--remote",
            "/x",
            "--branch",
            "main",
            "--commit",
            "7" * 40,
            "--timeout",
            "5m",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )


def test_wait_reaches_a_context_of_the_second_kubeconfig_file(tmp_path: Path) -> None:
    """The bare server has no Flux: that it says so for `prod` shows that prod.kc was read and its server asked."""
    server = SimApiServer()
    server.start()
    try:
        dev = kubeconfig(tmp_path / "dev.kc", contexts={"dev": UNREACHABLE}, current="dev")
        prod = kubeconfig(tmp_path / "prod.kc", contexts={"prod": server.url})
        result = fluxmon_wait(tmp_path, "--context", "prod", kubeconfigs=joined(dev, prod))
    finally:
        server.stop()
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].startswith(
        "fluxmon: Flux is not installed: Flux is not installed in context 'prod'"
    )


def test_wait_with_all_contexts_and_context_is_one_line_and_exit_2(tmp_path: Path) -> None:
    dev = kubeconfig(tmp_path / "dev.kc", contexts={"dev": UNREACHABLE}, current="dev")
    result = fluxmon_wait(tmp_path, "--all-contexts", "--context", "dev", kubeconfigs=str(dev))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fluxmon: Cannot read input: --all-contexts already takes every context: drop --context, or drop --all-contexts"
    ]


@pytest.mark.parametrize(
    ("token_file", "problem"),
    [
        ("line\nbreak\n", "its user's token holds a line break"),
        (" \n", "is empty"),
        (None, "cannot be read: No such file or directory"),
    ],
)
def test_a_bad_token_file_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token_file: str | None, problem: str
) -> None:
    """Not http.client's ValueError (a traceback) at the first request: a kubeconfig problem, said at connect."""
    if token_file is not None:
        (tmp_path / "token").write_text(token_file, encoding="utf-8")
    path = kubeconfig(tmp_path / "kc", contexts={"x": ""}, clusters={"x": {"server": UNREACHABLE}},
                      users={"x": {"tokenFile": "token"}}, current="x")  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(path))
    with pytest.raises(KubeconfigError, match=f"^{path}, context 'x': .*{problem}"):
        Cluster.connect()
