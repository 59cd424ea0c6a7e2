"""Reading Kubernetes objects from text, as `kubectl get -o yaml` or `-o json` prints them.

Input may be multi-document YAML, JSON, or a `kind: List` / `*List` wrapper holding items. Every problem is
reported as an InputError that names the input and the document, never as a parser traceback.

The input is read as a stream, one object at a time, and each object is dropped once judged: `fluxmon assess`
on a 60 MB `kubectl get -A -o yaml` keeps the verdicts, not the objects. A List is one YAML document, and kubectl
sorts its keys, so its `items` come before the `kind` that says it is a List: each item is judged as it is read,
and what was made of it (small) is held until the end of the List decides whether it counts.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import IO, Any, Generic, TypeVar

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from fluxmon.core.errors import InputError
from fluxmon.core.objects import FluxObject, is_flux_body, parse_flux_object
from fluxmon.core.redact import redact_text
from fluxmon.core.verdict import Phase, Verdict, verdict

T = TypeVar("T")
R = TypeVar("R")

MAX_INPUT_BYTES = 64 * 1024 * 1024
"""Refuse a text larger than this (the MCP server's `assess_objects`): an agent's message is a few MB at most.
Streams have no limit: they are read an object at a time."""

READ_CHUNK_BYTES = 64 * 1024

_MAP_TAG = "tag:yaml.org,2002:map"
_STR_TAG = "tag:yaml.org,2002:str"


class Utf8Stream:
    """A binary stream read as strict UTF-8, a chunk at a time, for the YAML parser.

    Bytes are decoded here rather than by the parser so that both parsers refuse invalid UTF-8 with the same
    message, which names the byte's offset in the whole input. `read1` returns what a pipe has so far, so a
    document is judged as soon as it has arrived."""

    def __init__(self, raw: IO[bytes], *, source: str) -> None:
        self._read1: Callable[[int], bytes] = getattr(raw, "read1", raw.read)
        self._source = source
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._offset = 0  # bytes read so far

    def read(self, size: int = -1) -> str:
        """Up to `size` bytes' worth of text; "" only at the end of the input (never for a character cut in two)."""
        while True:
            try:
                data = self._read1(size if size > 0 else READ_CHUNK_BYTES)
            except OSError as exc:
                raise InputError(f"cannot read {self._source}: {exc.strerror or exc}") from exc
            text = self._decode(data)
            if text or not data:
                return text

    def _decode(self, data: bytes) -> str:
        pending = len(self._decoder.getstate()[0])
        try:
            text: str = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            start = self._offset - pending + exc.start
            bad = exc.object[exc.start : exc.end]
            what = f"byte 0x{bad[0]:02x} in position {start}"
            if len(bad) > 1:
                what = f"bytes in position {start}-{start + len(bad) - 1}"
            raise InputError(f"cannot read {self._source}: 'utf-8' codec can't decode {what}: {exc.reason}") from exc
        self._offset += len(data)
        return text


LOADER: Callable[[str | Utf8Stream], Any] = yaml.SafeLoader
"""What reads the input: libyaml's parser when PyYAML was built with it (several times faster), else PyYAML's own.
Either way the same composer (`_compose`, PyYAML's in one call per node) and PyYAML's safe constructor make the
objects, so both give the same objects and errors."""

if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _LibyamlLoader(CParser, Composer, SafeConstructor, Resolver):
        """libyaml's events, composed in Python (`_compose`) so that a List's items can be taken one at a time, and
        PyYAML's safe constructor."""

        def __init__(self, stream: str | Utf8Stream) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    LOADER = _LibyamlLoader


@dataclass(frozen=True, kw_only=True, slots=True)
class Judged(Generic[R]):
    """What was made of one object: the notes said about it and, for a Flux object, what the caller keeps of its
    verdict (`keep`), and whether it failed."""

    notes: tuple[str, ...]
    kept: R | None = None
    failed: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Assessed:
    """The verdicts on the Flux objects of one input, and what was said about the rest."""

    rows: tuple[tuple[FluxObject, Verdict], ...]
    notes: tuple[str, ...]
    """One line per object skipped (not a Flux object) and per field read as empty, in input order."""


def assess_stream(
    stream: str | Utf8Stream, *, source: str, target: str | None, keep: Callable[[FluxObject, Verdict], R]
) -> Iterator[Judged[R]]:
    """Judge each Flux object in the input (relative to the pushed commit `target`, if given), in input order:
    what `fluxmon assess` prints. Messages are redacted (CI logs and agents keep no token). Of each verdict only
    `keep(object, verdict)` is kept, so that a large input costs the size of its output, not of its objects.
    Raises InputError for the first thing that cannot be read, once everything before it has been yielded."""

    def judge(where: str, body: Mapping[str, Any]) -> Judged[R]:
        if not is_flux_body(body):
            return Judged(notes=(f"skipped {_describe(body)}: not a Flux object",))
        try:
            obj = parse_flux_object(body)
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from exc
        result = verdict(obj, target)
        return Judged(
            notes=tuple(f"{where}: {obj.ref}: {problem}; read as empty" for problem in obj.problems),
            kept=keep(obj, replace(result, message=redact_text(result.message))),
            failed=result.phase is Phase.FAILED,
        )

    return iter_judged(stream, source=source, judge=judge)


def assess_text(
    text: str, *, source: str, target: str | None, on_note: Callable[[str], None] | None = None
) -> Assessed:
    """Judge each Flux object in `text`: what the MCP server's `assess_objects` answers.

    `on_note`: told each note as it is made, so that what was said before an unreadable object is not lost."""
    if len(text) > MAX_INPUT_BYTES:
        raise InputError(f"{source}: input is larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB")
    rows: list[tuple[FluxObject, Verdict]] = []
    notes: list[str] = []
    for judged in assess_stream(text, source=source, target=target, keep=lambda obj, result: (obj, result)):
        for note in judged.notes:
            notes.append(note)
            if on_note is not None:
                on_note(note)
        if judged.kept is not None:
            rows.append(judged.kept)
    return Assessed(rows=tuple(rows), notes=tuple(notes))


def _describe(body: Mapping[str, Any]) -> str:
    """`v1 ConfigMap apps/settings`, for the note on a skipped object."""
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = "/".join(str(part) for part in (metadata.get("namespace"), metadata.get("name")) if part)
    return f"{body.get('apiVersion')} {body.get('kind')} {name}".strip()


def iter_objects(text: str, *, source: str) -> Iterator[Mapping[str, Any]]:
    """Yield each object in `text`, with List wrappers flattened; raises InputError naming `source`."""
    return iter_judged(text, source=source, judge=lambda _, body: body)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Held(Generic[T]):
    """An item of a List, judged before the List's own kind was read: its results, its error, or (an item with no
    kind of its own) the item itself, which needs the List's kind."""

    index: int
    results: tuple[T, ...] = ()
    error: InputError | None = None
    item: Mapping[str, Any] | None = None


def iter_judged(stream: str | Utf8Stream, *, source: str, judge: Callable[[str, Mapping[str, Any]], T]) -> Iterator[T]:
    """`judge(where, object)` for each object in the input, in order, with List wrappers flattened; `where` names
    it (`in.yaml: document 3: items[1]`) for errors about it later. Raises InputError naming `source` and the
    document, for the first thing that cannot be read; what was judged before it has been yielded."""
    loader = LOADER(stream)
    number = 1
    try:
        loader.get_event()  # the stream's start
        while not loader.check_event(StreamEndEvent):
            loader.get_event()  # the document's start
            where = f"{source}: document {number}"
            if _is_plain_mapping(loader):
                results = _read_mapping_document(loader, where=where, judge=judge)
            else:
                results = _whole_document(loader.construct_document(_compose(loader)), where, judge)
            loader.get_event()  # the document's end
            loader.anchors = {}
            yield from results
            number += 1
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: document {number}: {_describe_yaml_error(exc)}") from exc
    except RecursionError as exc:
        # PyYAML composes nodes recursively, in Python with either parser: some hundreds of levels (libyaml itself
        # stops at 1,000). A Kubernetes object is a dozen deep.
        raise InputError(f"{source}: document {number}: nested too deeply to read") from exc
    finally:
        loader.dispose()


def _is_plain_mapping(loader: Any) -> bool:
    """A document that is a mapping with no tag or anchor of its own: every Kubernetes object. Anything else is
    read whole, as PyYAML reads it."""
    if not loader.check_event(MappingStartEvent):
        return False
    event = loader.peek_event()
    return event.anchor is None and event.tag in (None, "!")


def _whole_document(document: Any, where: str, judge: Callable[[str, Mapping[str, Any]], T]) -> Iterator[T]:
    if document is None:
        return  # an empty document, as between two `---` lines
    if not isinstance(document, Mapping):
        raise InputError(f"{where}: expected a Kubernetes object, got {type(document).__name__}")
    yield from _flatten(document, where=where, judge=judge)


def _read_mapping_document(loader: Any, *, where: str, judge: Callable[[str, Mapping[str, Any]], T]) -> Iterator[T]:
    """Read one document that is a mapping; its `items`, if a sequence, one at a time. Returns what to yield for it,
    once the document has been read to its end (so that a YAML error anywhere in it wins, as when read whole)."""
    start = loader.get_event()
    pairs: list[tuple[Any, Any]] = []
    held: list[_Held[T]] | None = None  # the items read one at a time, when `items` is a sequence
    while not loader.check_event(MappingEndEvent):
        key = _compose(loader)
        if _is_items_key(key):
            pairs = [(k, v) for k, v in pairs if not _is_items_key(k)]  # a later `items` replaces an earlier one
            held = None
            if _is_plain_sequence(loader):
                held = _read_items(loader, where=where, judge=judge)
                continue
        pairs.append((key, _compose(loader)))
    end = loader.get_event()
    header = loader.construct_document(MappingNode(_MAP_TAG, pairs, start.start_mark, end.end_mark))
    if held is None:
        return _whole_document(header, where, judge)
    header.pop("items", None)  # one that a merge key (`<<`) brought in; the explicit `items` wins, as in PyYAML
    return _replay_items(header, held, where=where, judge=judge)


def _compose(loader: Any) -> Node:
    """The next node, as PyYAML's `Composer.compose_node` makes it (tags resolved, anchors and aliases), in one
    call per node where it makes six: composing in Python is most of what streaming adds to libyaml's own parse.
    Path resolvers, which fluxmon never registers, are not consulted."""
    event = loader.get_event()
    kind = type(event)
    if kind is AliasEvent:
        if event.anchor not in loader.anchors:
            raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
        node: Node = loader.anchors[event.anchor]
        return node
    anchor, tag = event.anchor, event.tag
    if anchor is not None and anchor in loader.anchors:
        raise ComposerError(
            f"found duplicate anchor {anchor!r}; first occurrence",
            loader.anchors[anchor].start_mark,
            "second occurrence",
            event.start_mark,
        )
    if kind is ScalarEvent:
        if tag is None or tag == "!":
            tag = loader.resolve(ScalarNode, event.value, event.implicit)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        if anchor is not None:
            loader.anchors[anchor] = node
        return node
    if kind is SequenceStartEvent:
        if tag is None or tag == "!":
            tag = loader.resolve(SequenceNode, None, event.implicit)
        sequence = SequenceNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if anchor is not None:
            loader.anchors[anchor] = sequence  # before its items, as PyYAML does: they may refer to it
        while not loader.check_event(SequenceEndEvent):
            sequence.value.append(_compose(loader))
        sequence.end_mark = loader.get_event().end_mark
        return sequence
    if tag is None or tag == "!":
        tag = loader.resolve(MappingNode, None, event.implicit)
    mapping = MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
    if anchor is not None:
        loader.anchors[anchor] = mapping
    while not loader.check_event(MappingEndEvent):
        key = _compose(loader)
        mapping.value.append((key, _compose(loader)))
    mapping.end_mark = loader.get_event().end_mark
    return mapping


def _is_items_key(node: Any) -> bool:
    """The key `items`, as the string PyYAML makes of it (plain, quoted or `!!str`)."""
    return isinstance(node, ScalarNode) and node.tag == _STR_TAG and node.value == "items"


def _is_plain_sequence(loader: Any) -> bool:
    if not loader.check_event(SequenceStartEvent):
        return False
    event = loader.peek_event()
    return event.anchor is None and event.tag in (None, "!")


def _read_items(loader: Any, *, where: str, judge: Callable[[str, Mapping[str, Any]], T]) -> list[_Held[T]]:
    """Judge each item as it is read, as an item of a List; keep only the results. An item with no `kind` needs
    the List's (a typed `KustomizationList`), which may come after it: that item is kept whole."""
    loader.get_event()
    held: list[_Held[T]] = []
    failed = False
    index = 0
    while not loader.check_event(SequenceEndEvent):
        item = loader.construct_document(_compose(loader))
        if failed:
            pass  # the List fails at an earlier item; the rest is still parsed, for a YAML error that would win
        elif isinstance(item, Mapping) and "kind" not in item:
            held.append(_Held(index=index, item=item))
        else:
            try:
                if not isinstance(item, Mapping):
                    raise InputError(f"{where}: items[{index}] is not an object")
                results = tuple(_flatten(item, where=f"{where}: items[{index}]", judge=judge))
                held.append(_Held(index=index, results=results))
            except InputError as error:
                held.append(_Held(index=index, error=error))
                failed = True
        index += 1
    loader.get_event()
    return held


def _replay_items(
    header: Mapping[str, Any], held: list[_Held[T]], *, where: str, judge: Callable[[str, Mapping[str, Any]], T]
) -> Iterator[T]:
    """What a document with a streamed `items` gives, now that its kind is known: its items' results if it is a
    List, or itself if it is an object (whose `items`, which no Flux kind has, is not kept)."""
    kind = header.get("kind")
    if not isinstance(kind, str) or not header.get("apiVersion"):
        raise InputError(f"{where}: missing apiVersion or kind")
    if not (kind == "List" or kind.endswith("List")):
        yield judge(where, header)
        return
    for entry in held:
        if entry.error is not None:
            raise entry.error
        if entry.item is not None:
            yield from _flatten_item(
                entry.item, kind=kind, header=header, where=f"{where}: items[{entry.index}]", judge=judge
            )
        yield from entry.results


def _flatten(document: Mapping[str, Any], *, where: str, judge: Callable[[str, Mapping[str, Any]], T]) -> Iterator[T]:
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
            yield from _flatten_item(item, kind=kind, header=document, where=f"{where}: items[{index}]", judge=judge)
        return
    yield judge(where, document)


def _flatten_item(
    item: Mapping[str, Any],
    *,
    kind: str,
    header: Mapping[str, Any],
    where: str,
    judge: Callable[[str, Mapping[str, Any]], T],
) -> Iterator[T]:
    if "kind" not in item and kind != "List":
        # `kubectl get kustomizations -o json` lists items without kind; the List's kind names it.
        item = {**item, "kind": kind.removesuffix("List"), "apiVersion": header.get("apiVersion")}
    yield from _flatten(item, where=where, judge=judge)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    """One line: where the parser stopped and why, without the parser's multi-line excerpt."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)
