"""Flux objects as frozen values, parsed once from raw Kubernetes bodies.

Bodies arrive from the API, from `kubectl get -o yaml` or from tests, and any field may be missing or of the
wrong type. Parsing tolerates all of that here, once, so that the verdict and discovery code never reads raw
dicts. Only the fields the product reasons about are kept.

This is the one boundary between untrusted bodies and the product: a field that holds something unusable (a
list where a string belongs, a URL that does not parse) is read as empty and named in `FluxObject.problems`,
so the object is reported once, as itself, and nothing downstream ever meets the bad value. Every other object,
and every session, goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

SOURCE_GROUP = "source.toolkit.fluxcd.io"
KUSTOMIZE_GROUP = "kustomize.toolkit.fluxcd.io"
HELM_GROUP = "helm.toolkit.fluxcd.io"

FLUX_KINDS: dict[str, str] = {
    "GitRepository": SOURCE_GROUP,
    "OCIRepository": SOURCE_GROUP,
    "Bucket": SOURCE_GROUP,
    "HelmRepository": SOURCE_GROUP,
    "HelmChart": SOURCE_GROUP,
    "Kustomization": KUSTOMIZE_GROUP,
    "HelmRelease": HELM_GROUP,
}
"""Every kind the product understands, with its API group."""

SOURCE_KINDS = frozenset(kind for kind, group in FLUX_KINDS.items() if group == SOURCE_GROUP)

REQUESTED_AT_ANNOTATION = "reconcile.fluxcd.io/requestedAt"
OWNER_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
OWNER_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
OCI_SOURCE_ANNOTATION = "org.opencontainers.image.source"
OCI_REVISION_ANNOTATION = "org.opencontainers.image.revision"


@dataclass(frozen=True, kw_only=True, slots=True, order=True)
class ObjectRef:
    """Names one object: `Kustomization/flux-system/apps`."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Condition:
    """One entry of status.conditions; `observed_generation` is None where the API predates it."""

    type: str
    status: str
    reason: str = ""
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class GitRef:
    """spec.ref of a GitRepository: what it follows."""

    branch: str = ""
    tag: str = ""
    semver: str = ""
    name: str = ""
    commit: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class FluxObject:
    """The parts of a Flux object that verdicts and discovery read."""

    ref: ObjectRef
    api_version: str
    generation: int | None = None
    observed_generation: int | None = None
    suspended: bool = False
    conditions: tuple[Condition, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    requested_reconcile_at: str = ""
    last_handled_reconcile_at: str = ""
    # Sources.
    url: str = ""
    git_ref: GitRef | None = None
    artifact_revision: str = ""
    artifact_updated_at: str = ""
    origin_url: str = ""
    origin_revision: str = ""
    # Consumers: Kustomization, HelmRelease, HelmChart.
    source_ref: ObjectRef | None = None
    path: str = ""
    depends_on: tuple[ObjectRef, ...] = ()
    last_applied_revision: str = ""
    last_attempted_revision: str = ""
    applied_flux_objects: tuple[ObjectRef, ...] = ()
    """Flux objects in a Kustomization's inventory: the children it applies."""
    chart_version: str = ""
    """A HelmRelease's deployed chart version (status.history[0].chartVersion), which may carry a commit suffix."""
    # HelmRelease remediation: spec.install/upgrade.remediation.retries (0 when unset, -1 unlimited), the
    # spec.install/upgrade.strategy.name, the status.installFailures/upgradeFailures counters, and which action
    # status.lastAttemptedReleaseAction names (install or upgrade).
    install_retries: int = 0
    upgrade_retries: int = 0
    install_strategy: str = ""
    upgrade_strategy: str = ""
    install_failures: int = 0
    upgrade_failures: int = 0
    last_release_action: str = ""
    problems: tuple[str, ...] = ()
    """Fields that held something unusable, each read as empty: `spec.url: not a URL ('http://[oops')`."""

    @property
    def kind(self) -> str:
        return self.ref.kind

    @property
    def structure(self) -> FluxObject:
        """The object without the status that only verdicts read: what discovery's plan may depend on.

        Blanking the known status fields, rather than listing the spec ones, means a field added later counts as
        structure until someone decides otherwise: a plan is recomputed too often, never kept too long.
        """
        return replace(
            self,
            observed_generation=None,
            conditions=(),
            requested_reconcile_at="",
            last_handled_reconcile_at="",
            artifact_revision="",
            artifact_updated_at="",
            last_applied_revision="",
            last_attempted_revision="",
            chart_version="",
            install_failures=0,
            upgrade_failures=0,
            last_release_action="",
        )

    def condition(self, condition_type: str) -> Condition | None:
        """The condition of that type, if the controller has written one."""
        return next((c for c in self.conditions if c.type == condition_type), None)

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, "")

    @property
    def owner(self) -> ObjectRef | None:
        """The Kustomization that applied this object, from the labels kustomize-controller sets."""
        name = self.label(OWNER_NAME_LABEL)
        if not name:
            return None
        return ObjectRef(kind="Kustomization", namespace=self.label(OWNER_NAMESPACE_LABEL), name=name)


def is_flux_body(body: Mapping[str, Any]) -> bool:
    """Whether a raw body is one of the Flux kinds this product understands."""
    kind = body.get("kind")
    group = str(body.get("apiVersion", "")).partition("/")[0]
    return isinstance(kind, str) and FLUX_KINDS.get(kind) == group


def parse_flux_object(body: Mapping[str, Any]) -> FluxObject:
    """Parse a raw Flux body; raises ValueError when it is not a Flux object or has no name.

    Any other oddity is tolerated, and recorded in `problems`; an error while reading is this object's alone.
    """
    try:
        obj = _parse(body)
    except ValueError:
        raise
    except Exception as exc:  # a body no rule foresaw: refuse this object, never the caller's whole pass
        raise ValueError(f"{body.get('kind')} {_describe_name(body)}: cannot be read ({exc!r:.200})") from exc
    return replace(obj, problems=field_problems(body))


def _describe_name(body: Mapping[str, Any]) -> str:
    metadata = _mapping(body.get("metadata"))
    return "/".join(_text(metadata.get(key))[:253] for key in ("namespace", "name") if metadata.get(key))


def _parse(body: Mapping[str, Any]) -> FluxObject:
    if not is_flux_body(body):
        raise ValueError(f"not a Flux object: apiVersion={body.get('apiVersion')!r} kind={body.get('kind')!r}")
    metadata = _mapping(body.get("metadata"))
    spec = _mapping(body.get("spec"))
    status = _mapping(body.get("status"))
    name = _text(metadata.get("name"))
    if not name:
        raise ValueError(f"{body.get('kind')} has no metadata.name")
    namespace = _text(metadata.get("namespace"))
    kind = str(body["kind"])
    artifact = _mapping(status.get("artifact"))
    artifact_metadata = _mapping(artifact.get("metadata"))
    annotations = _mapping(metadata.get("annotations"))
    return FluxObject(
        ref=ObjectRef(kind=kind, namespace=namespace, name=name),
        api_version=_text(body.get("apiVersion")),
        generation=_int(metadata.get("generation")),
        observed_generation=_int(status.get("observedGeneration")),
        suspended=spec.get("suspend") is True,
        conditions=tuple(_condition(c) for c in _list(status.get("conditions")) if isinstance(c, Mapping)),
        labels=tuple(sorted((str(k), _text(v)) for k, v in _mapping(metadata.get("labels")).items())),
        requested_reconcile_at=_text(annotations.get(REQUESTED_AT_ANNOTATION)),
        last_handled_reconcile_at=_text(status.get("lastHandledReconcileAt")),
        url=_url(spec.get("url")),
        git_ref=_git_ref(spec.get("ref")) if kind == "GitRepository" else None,
        artifact_revision=_text(artifact.get("revision")),
        artifact_updated_at=_text(artifact.get("lastUpdateTime")),
        origin_url=_url(artifact_metadata.get(OCI_SOURCE_ANNOTATION)),
        origin_revision=_text(artifact_metadata.get(OCI_REVISION_ANNOTATION)),
        source_ref=_source_ref(kind, spec, namespace),
        path=_text(spec.get("path")),
        depends_on=tuple(
            _ref(kind, entry, namespace) for entry in _list(spec.get("dependsOn")) if isinstance(entry, Mapping)
        ),
        last_applied_revision=_text(status.get("lastAppliedRevision")),
        last_attempted_revision=_text(status.get("lastAttemptedRevision")),
        applied_flux_objects=_inventory(status.get("inventory")),
        chart_version=_chart_version(status),
        install_retries=_remediation_retries(spec.get("install")),
        upgrade_retries=_remediation_retries(spec.get("upgrade")),
        install_strategy=_text(_mapping(_mapping(spec.get("install")).get("strategy")).get("name")),
        upgrade_strategy=_text(_mapping(_mapping(spec.get("upgrade")).get("strategy")).get("name")),
        install_failures=_int(status.get("installFailures")) or 0,
        upgrade_failures=_int(status.get("upgradeFailures")) or 0,
        last_release_action=_text(status.get("lastAttemptedReleaseAction")),
    )


def _source_ref(kind: str, spec: Mapping[str, Any], namespace: str) -> ObjectRef | None:
    """Where the object's content comes from; a HelmRelease names its chart's source, old or new style."""
    if kind == "HelmRelease":
        chart_ref = _mapping(spec.get("chartRef"))
        if chart_ref:
            return _ref("", chart_ref, namespace)
        spec = _mapping(_mapping(spec.get("chart")).get("spec"))
    source = _mapping(spec.get("sourceRef"))
    return _ref("", source, namespace) if source else None


def _ref(default_kind: str, entry: Mapping[str, Any], default_namespace: str) -> ObjectRef:
    """A reference as Flux writes them: the namespace defaults to the referring object's own."""
    return ObjectRef(
        kind=_text(entry.get("kind")) or default_kind,
        namespace=_text(entry.get("namespace")) or default_namespace,
        name=_text(entry.get("name")),
    )


def _inventory(raw: Any) -> tuple[ObjectRef, ...]:
    """Flux children from inventory ids, which look like `<ns>_<name>_<group>_<kind>`."""
    refs: list[ObjectRef] = []
    for entry in _list(_mapping(raw).get("entries")):
        parts = _text(_mapping(entry).get("id")).split("_")
        if len(parts) != 4:
            continue
        namespace, name, group, kind = parts
        if FLUX_KINDS.get(kind) == group:
            refs.append(ObjectRef(kind=kind, namespace=namespace, name=name))
    return tuple(refs)


def _chart_version(status: Mapping[str, Any]) -> str:
    history = _list(status.get("history"))
    if history:
        return _text(_mapping(history[0]).get("chartVersion"))
    return ""


def _remediation_retries(action: Any) -> int:
    """spec.<install|upgrade>.remediation.retries: helm-controller's default is 0, and a negative number means
    unlimited (api/v2/helmrelease_types.go, InstallRemediation.Retries)."""
    return _int(_mapping(_mapping(action).get("remediation")).get("retries")) or 0


def _git_ref(raw: Any) -> GitRef:
    ref = _mapping(raw)
    return GitRef(
        branch=_text(ref.get("branch")),
        tag=_text(ref.get("tag")),
        semver=_text(ref.get("semver")),
        name=_text(ref.get("name")),
        commit=_text(ref.get("commit")),
    )


def _condition(raw: Mapping[str, Any]) -> Condition:
    return Condition(
        type=_text(raw.get("type")),
        status=_text(raw.get("status")) or "Unknown",
        reason=_text(raw.get("reason")),
        message=_text(raw.get("message")),
        observed_generation=_int(raw.get("observedGeneration")),
        last_transition_time=_text(raw.get("lastTransitionTime")),
    )


def _at(path: str) -> tuple[str, ...]:
    """`spec.dependsOn[].name` as its steps: spec, dependsOn, [], name."""
    return tuple(
        step
        for part in path.split(".")
        for step in (part.removesuffix("[]"), "[]" if part.endswith("[]") else "")
        if step
    )


READ_FIELDS: tuple[tuple[tuple[str, ...], str], ...] = (
    (_at("metadata.namespace"), "text"),
    (_at("metadata.generation"), "int"),
    (_at("metadata.labels"), "mapping"),
    (_at("metadata.labels.*"), "text"),
    (_at("metadata.annotations"), "mapping"),
    (_at("metadata.annotations.*"), "text"),
    (_at("spec"), "mapping"),
    (_at("spec.suspend"), "bool"),
    (_at("spec.url"), "url"),
    (_at("spec.ref"), "mapping"),
    (_at("spec.ref.*"), "text"),
    (_at("spec.sourceRef"), "mapping"),
    (_at("spec.sourceRef.*"), "text"),
    (_at("spec.chart"), "mapping"),
    (_at("spec.chart.spec"), "mapping"),
    (_at("spec.chart.spec.sourceRef"), "mapping"),
    (_at("spec.chart.spec.sourceRef.*"), "text"),
    (_at("spec.chartRef"), "mapping"),
    (_at("spec.chartRef.*"), "text"),
    (_at("spec.path"), "text"),
    (_at("spec.dependsOn"), "list"),
    (_at("spec.dependsOn[]"), "mapping"),
    (_at("spec.dependsOn[].*"), "text"),
    (_at("status"), "mapping"),
    (_at("status.observedGeneration"), "int"),
    (_at("status.conditions"), "list"),
    (_at("status.conditions[]"), "mapping"),
    (_at("status.conditions[].type"), "text"),
    (_at("status.conditions[].status"), "text"),
    (_at("status.conditions[].reason"), "text"),
    (_at("status.conditions[].message"), "text"),
    (_at("status.conditions[].observedGeneration"), "int"),
    (_at("status.conditions[].lastTransitionTime"), "text"),
    (_at("status.lastHandledReconcileAt"), "text"),
    (_at("status.artifact"), "mapping"),
    (_at("status.artifact.revision"), "text"),
    (_at("status.artifact.lastUpdateTime"), "text"),
    (_at("status.artifact.metadata"), "mapping"),
    ((*_at("status.artifact.metadata"), OCI_SOURCE_ANNOTATION), "url"),
    ((*_at("status.artifact.metadata"), OCI_REVISION_ANNOTATION), "text"),
    (_at("status.lastAppliedRevision"), "text"),
    (_at("status.lastAttemptedRevision"), "text"),
    (_at("status.inventory"), "mapping"),
    (_at("status.inventory.entries"), "list"),
    (_at("status.inventory.entries[]"), "mapping"),
    (_at("status.inventory.entries[].id"), "text"),
    (_at("status.history"), "list"),
    (_at("status.history[]"), "mapping"),
    (_at("status.history[].chartVersion"), "text"),
    *(
        entry
        for action in ("install", "upgrade")
        for entry in (
            (_at(f"spec.{action}"), "mapping"),
            (_at(f"spec.{action}.remediation"), "mapping"),
            (_at(f"spec.{action}.remediation.retries"), "int"),
            (_at(f"spec.{action}.strategy"), "mapping"),
            (_at(f"spec.{action}.strategy.name"), "text"),
            (_at(f"status.{action}Failures"), "int"),
        )
    ),
    (_at("status.lastAttemptedReleaseAction"), "text"),
)
"""Every field the parser reads, and what it must hold: a field added to the parser belongs here too.

`*` is every key of a mapping, `[]` every item of a list. A field that is absent or null is never a problem.
"""

_EXPECTED = {"text": "a string", "int": "an integer", "bool": "true or false", "mapping": "an object", "list": "a list"}


def field_problems(body: Mapping[str, Any]) -> tuple[str, ...]:
    """What in `body` breaks READ_FIELDS, one line per field: `spec.url: not a URL ('http://[oops/x.git')`.

    Every object read from a cluster comes through here, so READ_FIELDS are walked as one tree (`_FIELD_TREE`)
    that visits each present field once; problems are listed in READ_FIELDS' order all the same.
    """
    found: list[tuple[int, str]] = []
    _check(body, _FIELD_TREE, (), found, helm_release=body.get("kind") == "HelmRelease")
    found.sort(key=lambda problem: problem[0])  # stable: a field's values stay in the order they were met
    return tuple(text for _, text in found)


@dataclass
class _FieldNode:
    """One step of READ_FIELDS' paths: the checks of the fields that end here, and the steps that go on."""

    checks: list[tuple[int, str]] = field(default_factory=list)
    children: dict[str, _FieldNode] = field(default_factory=dict)


def _field_tree() -> _FieldNode:
    root = _FieldNode()
    for index, (steps, expected) in enumerate(READ_FIELDS):
        node = root
        for step in steps:
            node = node.children.setdefault(step, _FieldNode())
        node.checks.append((index, expected))
    return root


def _check(
    value: Any, node: _FieldNode, path: tuple[str | int, ...], found: list[tuple[int, str]], *, helm_release: bool
) -> None:
    is_mapping = type(value) is dict or isinstance(value, Mapping)
    for step, child in node.children.items():
        items: Iterable[tuple[str | int, Any]]
        if step == "[]":
            items = enumerate(value) if isinstance(value, list) else ()
        elif step == "*":
            items = value.items() if is_mapping else ()
        else:
            items = ((step, value.get(step)),) if is_mapping else ()
        for key, item in items:
            here = (*path, key)
            if item is None or (not helm_release and here in _HELM_RELEASE_SPEC):
                continue  # absent; or a HelmChart's spec.chart, the chart's name, not a HelmRelease's template
            for index, expected in child.checks:
                problem = _problem(item, expected)
                if problem:
                    found.append((index, f"{_where(here)}: {problem}"))
            if child.children:
                _check(item, child, here, found, helm_release=helm_release)


def _where(path: tuple[str | int, ...]) -> str:
    """A path as problems name it: `spec.dependsOn[0].name`."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else step
    return text


_HELM_RELEASE_SPEC = frozenset(("spec", key) for key in ("chart", "chartRef", "install", "upgrade"))
"""Spec fields read only from a HelmRelease: other kinds may use the same names for other things."""
_FIELD_TREE = _field_tree()


def _problem(value: Any, expected: str) -> str:
    if expected == "int":
        return "" if _int(value) is not None else f"expected {_EXPECTED[expected]}, got {_shape(value)}"
    if expected == "bool":
        return "" if isinstance(value, bool) else f"expected {_EXPECTED[expected]}, got {_shape(value)}"
    if expected == "mapping":
        return "" if isinstance(value, Mapping) else f"expected {_EXPECTED[expected]}, got {_shape(value)}"
    if expected == "list":
        return "" if isinstance(value, list) else f"expected {_EXPECTED[expected]}, got {_shape(value)}"
    # A whole number is read as its text: hand-written YAML (Flux's own docs) leaves `requestedAt: 1644759954`
    # unquoted, and the text it stands for is unambiguous.
    if not isinstance(value, (str, datetime, int)) or isinstance(value, bool):
        return f"expected {_EXPECTED['text']}, got {_shape(value)}"
    if expected == "url" and isinstance(value, str) and not _url(value):
        return f"not a URL ({value[:80]!r})"
    return ""


def _shape(value: Any) -> str:
    names = {str: "a string", dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def _url(value: Any) -> str:
    """The URL as text, or "" when it cannot be parsed (`http://[oops/x.git`): nothing downstream meets it."""
    text = _text(value) if isinstance(value, str) else ""
    try:
        urlsplit(text.strip())
    except ValueError:
        return ""
    return text


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str:
    if value is None or isinstance(value, (Mapping, list)):
        return ""
    if isinstance(value, datetime):
        # YAML turns an unquoted timestamp into a datetime; keep the RFC 3339 text the API would send.
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _int(value: Any) -> int | None:
    # bool is an int subclass; a YAML `true` is never a generation.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None
