"""Discovery: from a snapshot of Flux objects and a push to the plan of what deploys it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fluxmon.core.objects import FluxObject, ObjectRef, parse_flux_object
from fluxmon.core.plan import Push, normalize_remote_url, plan_for_push, source_follows
from fluxmon.core.redact import redact_url
from tests.flux_bodies import SHA_NEW, git_repository, helm_release, kustomization


def ks(name: str) -> ObjectRef:
    return ObjectRef(kind="Kustomization", namespace="flux-system", name=name)


def objects(*bodies: dict[str, Any]) -> list[FluxObject]:
    return [parse_flux_object(body) for body in bodies]


PUSH = Push(remote_url="git@github.com:acme/fleet.git", branch="main", commit=SHA_NEW)


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:acme/fleet.git",
        "git@github.com:acme/fleet",
        "ssh://git@github.com/acme/fleet",
        "ssh://git@github.com:22/acme/fleet.git",
        "https://github.com/acme/fleet",
        "https://github.com/acme/fleet.git",
        "https://github.com/acme/fleet/",
        "https://user:s3cret@GitHub.com/acme/fleet.git",
        "https://ghp_token@github.com/acme/fleet",
    ],
)
def test_every_spelling_of_a_remote_normalises_to_one_key(url: str) -> None:
    assert normalize_remote_url(url) == "github.com/acme/fleet"


def test_local_paths_and_file_urls_are_the_same_repo(tmp_path: Path) -> None:
    bare = tmp_path / "fleet.git"
    bare.mkdir()
    key = normalize_remote_url(str(bare))
    assert key == normalize_remote_url(f"file://{bare}")
    assert key == normalize_remote_url("fleet.git", base_dir=str(tmp_path))
    assert key == normalize_remote_url(f"{tmp_path}/./fleet")
    assert key != normalize_remote_url("github.com:acme/fleet")


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:s3cret@github.com/acme/fleet", "https://***@github.com/acme/fleet"),
        ("https://ghp_token@github.com/acme/fleet", "https://***@github.com/acme/fleet"),
        ("ssh://git:pw@host/acme/fleet", "ssh://git:***@host/acme/fleet"),
        ("ssh://git@host/acme/fleet", "ssh://git@host/acme/fleet"),
        ("git@github.com:acme/fleet.git", "git@github.com:acme/fleet.git"),
        ("https://github.com/acme/fleet", "https://github.com/acme/fleet"),
    ],
)
def test_redaction_removes_every_secret(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert "s3cret" not in redact_url(url)
    assert "ghp_token" not in redact_url(url)


@pytest.mark.parametrize(
    ("ref", "push", "follows"),
    [
        (
            {"branch": "main"},
            Push(remote_url="https://github.com/acme/fleet", branch="main", commit=SHA_NEW),
            True,
        ),
        (
            {"branch": "main"},
            Push(remote_url="https://github.com/acme/fleet", branch="dev", commit=SHA_NEW),
            False,
        ),
        (
            {"branch": "main"},
            Push(remote_url="https://github.com/acme/other", branch="main", commit=SHA_NEW),
            False,
        ),
        ({}, Push(remote_url="https://github.com/acme/fleet", branch="master", commit=SHA_NEW), True),
        (
            {"name": "refs/heads/main"},
            Push(remote_url="https://github.com/acme/fleet", branch="main", commit=SHA_NEW),
            True,
        ),
        (
            {"tag": "v1.2.0"},
            Push(remote_url="https://github.com/acme/fleet", tag="v1.2.0", commit=SHA_NEW),
            True,
        ),
        (
            {"tag": "v1.2.0"},
            Push(remote_url="https://github.com/acme/fleet", branch="main", commit=SHA_NEW),
            False,
        ),
        (
            {"semver": ">=1.0.0"},
            Push(remote_url="https://github.com/acme/fleet", tag="v1.3.0", commit=SHA_NEW),
            True,
        ),
        (
            {"commit": SHA_NEW},
            Push(remote_url="https://github.com/acme/fleet", branch="main", commit=SHA_NEW),
            False,
        ),
    ],
)
def test_source_follows_remote_and_ref(ref: dict[str, str], push: Push, follows: bool) -> None:
    source = parse_flux_object(git_repository(ref=ref))
    assert source_follows(source, push) is follows


def fleet() -> list[FluxObject]:
    """A bootstrap-style fleet: flux-system applies infrastructure and apps; apps dependsOn infrastructure."""
    return objects(
        git_repository(),
        git_repository("other", url="https://github.com/acme/other"),
        kustomization(
            "flux-system",
            path="./clusters/production",
            inventory=(
                "flux-system_infrastructure_kustomize.toolkit.fluxcd.io_Kustomization",
                "flux-system_apps_kustomize.toolkit.fluxcd.io_Kustomization",
            ),
        ),
        kustomization("infrastructure", path="./infrastructure", depends_on=("platform",)),
        kustomization(
            "apps",
            path="./apps/production",
            depends_on=("infrastructure",),
            inventory=("apps_web_helm.toolkit.fluxcd.io_HelmRelease",),
        ),
        kustomization("platform", source="other"),
        kustomization("monitoring", source="other", depends_on=("apps",)),
        kustomization("unrelated", source="other"),
        helm_release("web"),
        helm_release(
            "api",
            labels={
                "kustomize.toolkit.fluxcd.io/name": "apps",
                "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
            },
        ),
        helm_release(
            "chart-from-git",
            chart_source={"kind": "GitRepository", "name": "fleet", "namespace": "flux-system"},
        ),
        helm_release("redis"),
    )


def test_plan_follows_sources_kustomizations_dependents_and_releases() -> None:
    plan = plan_for_push(fleet(), PUSH)
    assert plan.sources == (ObjectRef(kind="GitRepository", namespace="flux-system", name="fleet"),)
    # monitoring comes from another source but dependsOn apps, so it waits on this push too.
    assert plan.kustomizations == (ks("apps"), ks("flux-system"), ks("infrastructure"), ks("monitoring"))
    assert {ref.name for ref in plan.helm_releases} == {"web", "api", "chart-from-git"}
    # Gates that come from elsewhere: platform (a dependency) and monitoring's own source.
    assert plan.upstream == (
        ObjectRef(kind="GitRepository", namespace="flux-system", name="other"),
        ks("platform"),
    )
    assert (ks("apps"), ks("infrastructure")) in plan.edges
    assert (
        ks("infrastructure"),
        ObjectRef(kind="GitRepository", namespace="flux-system", name="fleet"),
    ) in plan.edges
    assert (ks("apps"), ks("flux-system")) in plan.edges  # applied by the parent
    assert plan.cycles == ()
    assert plan.touched is None


def test_plan_marks_the_kustomizations_a_change_touches() -> None:
    push = Push(remote_url=PUSH.remote_url, branch="main", commit=SHA_NEW, changed_paths=("apps/production/web.yaml",))
    plan = plan_for_push(fleet(), push)
    assert plan.touched == (ks("apps"), ks("monitoring"))  # monitoring's path is the repo root


def test_no_source_gives_an_empty_plan_with_a_redacted_note() -> None:
    push = Push(remote_url="https://bot:s3cret@example.com/x/y", branch="main", commit=SHA_NEW)
    plan = plan_for_push(fleet(), push)
    assert plan.empty
    assert plan.notes == ("no Flux source follows https://***@example.com/x/y main",)


def test_dependency_cycles_are_reported_not_looped() -> None:
    plan = plan_for_push(
        objects(
            git_repository(),
            kustomization("a", depends_on=("b",)),
            kustomization("b", depends_on=("c",)),
            kustomization("c", depends_on=("a",)),
        ),
        PUSH,
    )
    assert plan.kustomizations == (ks("a"), ks("b"), ks("c"))
    assert plan.cycles == ((ks("a"), ks("b"), ks("c")),)


def test_namespaced_references_default_to_the_referrer_namespace() -> None:
    plan = plan_for_push(objects(git_repository(namespace="team"), kustomization("apps", namespace="team")), PUSH)
    assert plan.kustomizations == (ObjectRef(kind="Kustomization", namespace="team", name="apps"),)


def test_no_source_on_the_branch_says_what_the_repositorys_sources_follow_instead() -> None:
    """Promotion at a glance: a production cluster that follows release tags is not "not following" by mistake."""
    plan = plan_for_push(
        objects(
            git_repository("releases", ref={"semver": ">=1.0.0"}),
            git_repository("pinned", ref={"tag": "v1.2.0"}),
            git_repository("other-repo", url="ssh://git@github.com/acme/elsewhere", ref={"branch": "main"}),
        ),
        PUSH,
    )
    assert plan.notes == (
        "no Flux source follows git@github.com:acme/fleet.git main: GitRepository flux-system/pinned follows tag "
        "v1.2.0; GitRepository flux-system/releases follows tags matching semver >=1.0.0: this push does not go "
        "there",
    )
