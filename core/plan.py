"""Which Flux objects deploy a push: a pure function from a snapshot of objects and a push to a plan.

A push names a remote URL and a branch. The sources that follow it are matched on normalised URLs, because the
same repository is written many ways (`git@host:org/repo.git`, `ssh://git@host/org/repo`,
`https://user:token@host/org/repo`). From those sources the plan follows Kustomizations, everything that
`dependsOn` them, and the HelmReleases they apply or whose chart comes from those sources.

Credentials in URLs are dropped (core.redact) at the first place a URL is read, and never kept.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from fluxmon.core.objects import FluxObject, ObjectRef
from fluxmon.core.redact import redact_url
from fluxmon.core.revision import short_sha

_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/]+):(?P<path>(?!//).*)$")
_DEFAULT_GIT_BRANCH = "master"
"""source-controller checks out `master` when a GitRepository has no spec.ref."""


def normalize_remote_url(url: str, *, base_dir: str | None = None) -> str:
    """A canonical key for a git remote: `host/org/repo` for network URLs, `file:///abs/path` for local ones.

    User info, ports of the default kind, `.git` suffixes, trailing slashes and letter case of the host are
    dropped, so that every spelling of one repository gives the same key. Relative local paths are resolved
    against `base_dir`. Never raises: a URL that does not parse is its own key, matching only the same text.
    """
    url = url.strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"unparsable:{redact_url(url)}"
    if url.startswith("file://"):
        return _local_key(parts.path, base_dir)
    if "://" in url:
        host = (parts.hostname or "").lower()
        path = parts.path
    elif (match := _SCP_LIKE.match(url)) and not url.startswith(("/", ".")):
        host = match["host"].lower()
        path = match["path"]
    else:
        return _local_key(url, base_dir)
    path = path.strip("/")
    path = path.removesuffix(".git").removesuffix("/")
    return f"{host}/{path}"


def check_remote_url(url: str) -> str:
    """The URL, if it can name a git remote; raises ValueError saying what is wrong (for input from people)."""
    if not url.strip():
        raise ValueError("empty")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise ValueError("contains control characters")
    try:
        urlsplit(url.strip())
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    return url


def _local_key(path: str, base_dir: str | None) -> str:
    try:
        resolved = str(Path(base_dir or ".", path).resolve())
    except (ValueError, OSError):  # a NUL byte, a loop of links: no such folder, so the text is the key
        resolved = posixpath.normpath(posixpath.join(base_dir or "/", path))
    return f"file://{resolved.removesuffix('.git')}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Push:
    """What was pushed: a remote, a branch (or tag), a commit, and optionally the paths it changed."""

    remote_url: str
    branch: str = ""
    tag: str = ""
    commit: str
    changed_paths: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """The Flux objects that deploy a push, and how they hang together."""

    sources: tuple[ObjectRef, ...] = ()
    kustomizations: tuple[ObjectRef, ...] = ()
    helm_releases: tuple[ObjectRef, ...] = ()
    upstream: tuple[ObjectRef, ...] = ()
    """Dependencies of the followed objects that come from elsewhere: they gate the push but do not deploy it."""
    edges: tuple[tuple[ObjectRef, ObjectRef], ...] = ()
    """(dependent, dependency) pairs: sourceRef, dependsOn and parent-applies-child, for display."""
    touched: tuple[ObjectRef, ...] | None = None
    """Kustomizations whose spec.path holds a changed path; None when the changed paths are unknown."""
    cycles: tuple[tuple[ObjectRef, ...], ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def followed(self) -> tuple[ObjectRef, ...]:
        """Everything the session follows, sources first, in a stable order."""
        return self.sources + self.kustomizations + self.helm_releases

    @property
    def empty(self) -> bool:
        return not self.sources


def source_follows(source: FluxObject, push: Push, *, base_dir: str | None = None) -> bool:
    """Whether a source fetches what this push updated: the same repository, and the pushed branch or tag."""
    if source.kind == "OCIRepository":
        # An artifact built by CI from this repo records the git URL and revision it came from.
        if not source.origin_url:
            return False
        if normalize_remote_url(source.origin_url, base_dir=base_dir) != normalize_remote_url(
            push.remote_url, base_dir=base_dir
        ):
            return False
        pointer = source.origin_revision.rpartition("@")[0]
        return not pointer or pointer in (push.branch, f"refs/heads/{push.branch}")
    if source.kind != "GitRepository":
        return False
    if normalize_remote_url(source.url, base_dir=base_dir) != normalize_remote_url(push.remote_url, base_dir=base_dir):
        return False
    ref = source.git_ref
    if ref is None or not any((ref.branch, ref.tag, ref.semver, ref.name, ref.commit)):
        return push.branch == _DEFAULT_GIT_BRANCH
    if ref.commit and not ref.name and not ref.branch:
        return False  # pinned to one commit: no push moves it.
    if ref.name:
        return ref.name in (f"refs/heads/{push.branch}", f"refs/tags/{push.tag}")
    if ref.tag:
        return ref.tag == push.tag
    if ref.semver:
        return bool(push.tag)  # any new tag may satisfy a semver range; the source's revision decides.
    return ref.branch == push.branch


def not_followed_message(objects: Iterable[FluxObject], push: Push, *, base_dir: str | None = None) -> str:
    """Why no source follows the push; and, for promotion at a glance, what the sources of the same repository
    follow instead ("…: GitRepository flux-system/flux-system follows tags v*: this push does not go there")."""
    text = f"no Flux source follows {redact_url(push.remote_url)} {push.branch or push.tag}"
    pushed = normalize_remote_url(push.remote_url, base_dir=base_dir)
    elsewhere = [
        f"{obj.kind} {obj.ref.namespace}/{obj.ref.name} follows {_describe_ref(obj)}"
        for obj in sorted(objects, key=lambda o: o.ref)
        if obj.kind == "GitRepository" and obj.url and normalize_remote_url(obj.url, base_dir=base_dir) == pushed
    ]
    return f"{text}: {'; '.join(elsewhere)}: this push does not go there" if elsewhere else text


def _describe_ref(source: FluxObject) -> str:
    """A GitRepository's spec.ref in words, in the order source-controller reads it (name, commit, semver, tag,
    branch: api/v1 GitRepositoryRef's doc comments)."""
    ref = source.git_ref
    if ref is None or not any((ref.branch, ref.tag, ref.semver, ref.name, ref.commit)):
        return f"branch {_DEFAULT_GIT_BRANCH}"
    if ref.name:
        return f"ref {ref.name}"
    if ref.commit and not ref.branch:
        return f"commit {short_sha(ref.commit)} only"
    if ref.semver:
        return f"tags matching semver {ref.semver}"
    if ref.tag:
        return f"tag {ref.tag}"
    return f"branch {ref.branch}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectIndex:
    """The objects as discovery looks them up, built once per structural change and shared by every session.

    Planning a push then costs the objects that deploy it, not the whole cluster: with 50 sessions over 10,000
    objects, one index instead of 50 scans of everything.
    """

    by_ref: Mapping[ObjectRef, FluxObject]
    sources: tuple[FluxObject, ...]
    """The GitRepositories and OCIRepositories: the only objects a push can be followed by."""
    kustomizations_by_source: Mapping[ObjectRef, tuple[ObjectRef, ...]]
    dependents: Mapping[ObjectRef, tuple[ObjectRef, ...]]
    """Who dependsOn each object."""
    releases_by_owner: Mapping[ObjectRef, tuple[ObjectRef, ...]]
    """HelmReleases by the Kustomization that applied them (its labels)."""
    releases_by_chart_source: Mapping[ObjectRef, tuple[ObjectRef, ...]]
    """HelmReleases by the source their chart is built from: directly, or through the HelmChart they name."""

    @classmethod
    def of(cls, objects: Iterable[FluxObject]) -> ObjectIndex:
        by_ref = {obj.ref: obj for obj in objects}
        sources = []
        kustomizations_by_source: dict[ObjectRef, list[ObjectRef]] = {}
        dependents: dict[ObjectRef, list[ObjectRef]] = {}
        releases_by_owner: dict[ObjectRef, list[ObjectRef]] = {}
        releases_by_chart_source: dict[ObjectRef, list[ObjectRef]] = {}
        for ref, obj in by_ref.items():
            for dependency in obj.depends_on:
                dependents.setdefault(dependency, []).append(ref)
            if obj.kind in _SOURCE_KINDS:
                sources.append(obj)
            elif obj.kind == "Kustomization" and obj.source_ref is not None:
                kustomizations_by_source.setdefault(obj.source_ref, []).append(ref)
            elif obj.kind == "HelmRelease":
                if obj.owner is not None:
                    releases_by_owner.setdefault(obj.owner, []).append(ref)
                for chart_source in _chart_sources(obj, by_ref):
                    releases_by_chart_source.setdefault(chart_source, []).append(ref)
        return cls(
            by_ref=by_ref,
            sources=tuple(sources),
            kustomizations_by_source=_frozen(kustomizations_by_source),
            dependents=_frozen(dependents),
            releases_by_owner=_frozen(releases_by_owner),
            releases_by_chart_source=_frozen(releases_by_chart_source),
        )


_SOURCE_KINDS = ("GitRepository", "OCIRepository")


def _frozen(lists: dict[ObjectRef, list[ObjectRef]]) -> dict[ObjectRef, tuple[ObjectRef, ...]]:
    return {ref: tuple(values) for ref, values in lists.items()}


def _chart_sources(release: FluxObject, by_ref: Mapping[ObjectRef, FluxObject]) -> tuple[ObjectRef, ...]:
    """The sources a HelmRelease's chart may be built from: what it names, and the source of a HelmChart it names."""
    ref = release.source_ref
    if ref is None:
        return ()
    chart = by_ref.get(ref) if ref.kind == "HelmChart" else None
    return (ref, chart.source_ref) if chart is not None and chart.source_ref is not None else (ref,)


def plan_for_push(objects: Iterable[FluxObject] | ObjectIndex, push: Push, *, base_dir: str | None = None) -> Plan:
    """The monitoring plan for `push` over a snapshot of Flux objects (or their index, shared between pushes)."""
    index = objects if isinstance(objects, ObjectIndex) else ObjectIndex.of(objects)
    by_ref = index.by_ref
    sources = sorted(obj.ref for obj in index.sources if source_follows(obj, push, base_dir=base_dir))
    if not sources:
        return Plan(notes=(not_followed_message(index.sources, push, base_dir=base_dir),))
    kustomizations = {ref for source in sources for ref in index.kustomizations_by_source.get(source, ())}

    # Everything that dependsOn a followed Kustomization waits for this push too, transitively.
    kustomizations |= {ref for ref in _closure(kustomizations, index.dependents) if ref.kind == "Kustomization"}

    helm_releases = {ref for source in sources for ref in index.releases_by_chart_source.get(source, ())}
    helm_releases |= {ref for owner in kustomizations for ref in index.releases_by_owner.get(owner, ())}
    edges: set[tuple[ObjectRef, ObjectRef]] = set()
    for ref in kustomizations:
        for child in by_ref[ref].applied_flux_objects:
            edges.add((child, ref))
            if child.kind == "HelmRelease" and child in by_ref:
                helm_releases.add(child)
    helm_releases |= {ref for ref in _closure(helm_releases, index.dependents) if ref.kind == "HelmRelease"}

    followed = set(sources) | kustomizations | helm_releases
    for ref in followed:
        obj = by_ref.get(ref)
        if obj is None:
            continue
        edges.update((ref, dependency) for dependency in obj.depends_on)
        if obj.source_ref is not None and obj.source_ref in by_ref:
            edges.add((ref, obj.source_ref))
    upstream = {dep for dependent, dep in edges if dependent in followed and dep not in followed and dep in by_ref}
    outgoing = dependencies_by_dependent(edges)
    return Plan(
        sources=tuple(sources),
        kustomizations=tuple(sorted(kustomizations)),
        helm_releases=tuple(sorted(helm_releases)),
        upstream=tuple(sorted(upstream)),
        edges=tuple(sorted(edge for edge in edges if edge[0] in followed)),
        touched=_touched(kustomizations, by_ref, push.changed_paths),
        cycles=_cycles({ref: [d for d in outgoing.get(ref, []) if d.kind == ref.kind] for ref in followed}),
    )


def dependencies_by_dependent(edges: Iterable[tuple[ObjectRef, ObjectRef]]) -> dict[ObjectRef, list[ObjectRef]]:
    """The (dependent, dependency) edges as a map, so that each object's are found at once, not by a scan."""
    outgoing: dict[ObjectRef, list[ObjectRef]] = {}
    for dependent, dependency in sorted(edges):
        outgoing.setdefault(dependent, []).append(dependency)
    return outgoing


def _closure(start: set[ObjectRef], dependents: Mapping[ObjectRef, Iterable[ObjectRef]]) -> set[ObjectRef]:
    """Everything reachable from `start` through the dependents map (cycles are safe: each node is seen once)."""
    seen = set(start)
    stack = list(start)
    while stack:
        for dependent in dependents.get(stack.pop(), ()):
            if dependent not in seen:
                seen.add(dependent)
                stack.append(dependent)
    return seen


def _touched(
    kustomizations: Iterable[ObjectRef],
    by_ref: Mapping[ObjectRef, FluxObject],
    changed: tuple[str, ...] | None,
) -> tuple[ObjectRef, ...] | None:
    """Kustomizations whose spec.path holds one of the changed paths (a hint: kustomize may reach further)."""
    if changed is None:
        return None
    touched = []
    for ref in sorted(kustomizations):
        root = posixpath.normpath(by_ref[ref].path.strip() or ".").lstrip("/")
        if root == "." or any(path == root or path.startswith(root + "/") for path in map(posixpath.normpath, changed)):
            touched.append(ref)
    return tuple(touched)


def _cycles(graph: Mapping[ObjectRef, list[ObjectRef]]) -> tuple[tuple[ObjectRef, ...], ...]:
    """Each dependency cycle once, found by depth-first search; Flux would wait on such a chain forever."""
    cycles: list[tuple[ObjectRef, ...]] = []
    state: dict[ObjectRef, int] = {}  # 1 = on the current path, 2 = done
    path: list[ObjectRef] = []

    def visit(node: ObjectRef) -> None:
        state[node] = 1
        path.append(node)
        for dependency in sorted(graph.get(node, ())):
            if state.get(dependency) == 1:
                cycles.append(tuple(path[path.index(dependency) :]))
            elif dependency not in state:
                visit(dependency)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return tuple(cycles)
