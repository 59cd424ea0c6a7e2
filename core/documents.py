"""Reading Kubernetes objects from text, as `kubectl get -o yaml` or `-o json` prints them.

Input may be multi-document YAML, JSON, or a `kind: List` / `*List` wrapper holding items. Every problem is
reported as an InputError that names the input and the document, never as a parser traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from fluxmon.core.errors import InputError
from fluxmon.core.objects import FluxObject, is_flux_body, parse_flux_object
from fluxmon.core.redact import redact_text
from fluxmon.core.verdict import Verdict, verdict

_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader when PyYAML was built with it: several times faster on a large `kubectl get -A`."""

MAX_INPUT_BYTES = 64 * 1024 * 1024
"""Refuse inputs larger than this: `kubectl get -A` of a big fleet is a few MB, not hundreds."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Assessed:
    """The verdicts on the Flux objects of one input, and what was said about the rest."""

    rows: tuple[tuple[FluxObject, Verdict], ...]
    notes: tuple[str, ...]
    """One line per object skipped (not a Flux object) and per field read as empty, in input order."""


def assess_text(text: str, *, source: str, target: str | None) -> Assessed:
    """Judge each Flux object in `text` (relative to the pushed commit `target`, if given): what `fluxmon assess`
    and the MCP server's `assess_objects` answer. Messages are redacted (CI logs and agents keep no token)."""
    rows: list[tuple[FluxObject, Verdict]] = []
    notes: list[str] = []
    for where, body in iter_located_objects(text, source=source):
        if not is_flux_body(body):
            notes.append(f"skipped {_describe(body)}: not a Flux object")
            continue
        try:
            obj = parse_flux_object(body)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from exc
        notes.extend(f"{where}: {obj.ref}: {problem}; read as empty" for problem in obj.problems)
        result = verdict(obj, target)
        rows.append((obj, replace(result, message=redact_text(result.message))))
    return Assessed(rows=tuple(rows), notes=tuple(notes))


def _describe(body: Mapping[str, Any]) -> str:
    """`v1 ConfigMap apps/settings`, for the note on a skipped object."""
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = "/".join(str(part) for part in (metadata.get("namespace"), metadata.get("name")) if part)
    return f"{body.get('apiVersion')} {body.get('kind')} {name}".strip()


def iter_objects(text: str, *, source: str) -> Iterator[Mapping[str, Any]]:
    """Yield each object in `text`, with List wrappers flattened; raises InputError naming `source`."""
    for _, document in iter_located_objects(text, source=source):
        yield document


def iter_located_objects(text: str, *, source: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each object in `text` with where it is (`in.yaml: document 3: items[1]`), for errors about it later."""
    if len(text) > MAX_INPUT_BYTES:
        raise InputError(f"{source}: input is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    loader = yaml.load_all(text, Loader=_SAFE_LOADER)
    number = 0
    while True:
        number += 1
        try:
            document = next(loader)
        except StopIteration:
            return
        except yaml.YAMLError as exc:
            raise InputError(f"{source}: document {number}: {_describe_yaml_error(exc)}") from exc
        if document is None:
            continue  # an empty document, as between two `---` lines
        if not isinstance(document, Mapping):
            raise InputError(
                f"{source}: document {number}: expected a Kubernetes object, got {type(document).__name__}"
            )
        yield from _flatten(document, where=f"{source}: document {number}")


def _flatten(document: Mapping[str, Any], *, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    kind = document.get("kind")
    if not isinstance(kind, str) or not document.get("apiVersion"):
        raise InputError(f"{where}: missing apiVersion or kind")
    if kind == "List" or (kind.endswith("List") and "items" in document):
        items = document.get("items") or []
        if not isinstance(items, list):
            raise InputError(f"{where}: {kind}.items is not a list")
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InputError(f"{where}: items[{index}] is not an object")
            if "kind" not in item and kind != "List":
                # `kubectl get kustomizations -o json` lists items without kind; the List's kind names it.
                item = {**item, "kind": kind.removesuffix("List"), "apiVersion": document.get("apiVersion")}
            yield from _flatten(item, where=f"{where}: items[{index}]")
        return
    yield where, document


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    """One line: where the parser stopped and why, without the parser's multi-line excerpt."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)
