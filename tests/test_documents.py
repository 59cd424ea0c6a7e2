"""Reading objects from `kubectl get` output: multi-document YAML, JSON, Lists, and every malformed case."""

from __future__ import annotations

import io
import json
import re
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxmon.core import documents
from fluxmon.core.documents import Utf8Stream, assess_stream, iter_judged, iter_objects
from fluxmon.core.errors import InputError
from fluxmon.core.render import verdict_record
from fluxmon.core.verdict import Phase
from tests.flux_bodies import SHA_NEW, kustomization, ready


def names(text: str) -> list[str]:
    return [obj["metadata"]["name"] for obj in iter_objects(text, source="in")]


def test_multi_document_yaml_with_empty_documents() -> None:
    text = (
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
        "---\n---\n"
        "apiVersion: v1\nkind: Secret\nmetadata: {name: b}\n"
    )
    assert names(text) == ["a", "b"]


def test_kubectl_json_list() -> None:
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [kustomization("a"), kustomization("b")]})
    assert names(text) == ["a", "b"]


def test_typed_list_items_without_kind_take_it_from_the_list() -> None:
    item = kustomization("a")
    del item["kind"]
    text = json.dumps({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "KustomizationList", "items": [item]})
    (obj,) = iter_objects(text, source="in")
    assert obj["kind"] == "Kustomization"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apiVersion: v1\nkind: [unclosed\n", r"^in: document 1: line 3, column 1: did not find expected"),
        ("apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n: : :\n  - x\n", r"^in: document 2: line \d+"),
        ("- just\n- a list\n", r"^in: document 1: expected a Kubernetes object, got list"),
        ("metadata: {name: a}\n", r"^in: document 1: missing apiVersion or kind"),
        ("apiVersion: v1\nkind: List\nitems: nope\n", r"^in: document 1: List.items is not a list"),
        ("apiVersion: v1\nkind: List\nitems: [3]\n", r"^in: document 1: items\[0\] is not an object"),
        ('{"apiVersion": "v1", "kind": ', r"^in: document 1: "),
    ],
)
def test_malformed_input_names_the_document_and_the_problem(text: str, expected: str) -> None:
    with pytest.raises(InputError, match=expected) as caught:
        list(iter_objects(text, source="in"))
    assert "\n" not in str(caught.value)


# Streaming: the input is read an object at a time, and a List's items one at a time.

LOADERS = {"libyaml": documents.LOADER, "python": yaml.SafeLoader}
"""The loader in use (libyaml's when PyYAML has it) and PyYAML's pure-Python one, which must read the same."""
CORPUS = sorted((Path(__file__).parent / "fixtures" / "flux-corpus").glob("*.yaml"))
EXAMPLES = Path(__file__).parent / "fixtures" / "flux-examples.yaml"


@pytest.fixture(params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(documents, "LOADER", LOADERS[request.param])
    return str(request.param)


def stream(data: bytes | str, *, chunk: int = 0) -> Utf8Stream:
    """`data` as fluxmon reads a file or a pipe; with `chunk`, a pipe that gives that many bytes at a time."""
    raw = data.encode() if isinstance(data, str) else data
    if not chunk:
        return Utf8Stream(io.BufferedReader(io.BytesIO(raw)), source="in")
    return Utf8Stream(io.BufferedReader(Trickle(raw, chunk=chunk)), source="in")


class Trickle(io.RawIOBase):
    """A pipe whose writer sends `chunk` bytes at a time: each read gets no more than that."""

    def __init__(self, data: bytes, *, chunk: int) -> None:
        self._data = memoryview(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._chunk, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def read(data: bytes | str, *, chunk: int = 0) -> list[tuple[str, str]]:
    """(where, name) of each object, then ("error", message) if the input cannot be read to its end."""
    found: list[tuple[str, str]] = []
    try:
        for where, body in iter_judged(stream(data, chunk=chunk), source="in", judge=lambda w, b: (w, b)):
            found.append((where, str(body.get("metadata", {}).get("name"))))
    except InputError as error:
        found.append(("error", str(error)))
    return found


def item(name: str, kind: str = "ConfigMap") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}


def test_a_kubectl_list_is_read_with_its_kind_after_its_items(loader: str) -> None:
    # kubectl sorts keys: `items` comes before the `kind` that makes it a List.
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [item("a"), item("b")], "metadata": {}})
    assert text.index("items:") < text.index("kind: List")
    assert read(text) == [("in: document 1: items[0]", "a"), ("in: document 1: items[1]", "b")]


def test_a_typed_list_whose_items_have_no_kind_takes_it_from_the_list_read_after_them(loader: str) -> None:
    bare = {"metadata": {"name": "a"}, "spec": {}}
    text = json.dumps({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "items": [bare], "kind": "KustomizationList"})
    (body,) = iter_judged(stream(text), source="in", judge=lambda _, body: body)
    assert (body["kind"], body["apiVersion"]) == ("Kustomization", "kustomize.toolkit.fluxcd.io/v1")


def test_an_object_with_an_items_field_is_the_object_not_a_list(loader: str) -> None:
    text = "apiVersion: v1\nitems: [3, 4]\nkind: Widget\nmetadata: {name: top}\n"
    assert read(text) == [("in: document 1", "top")]


def test_the_lists_kind_may_come_from_a_merge_key_and_a_later_items_replaces_an_earlier(loader: str) -> None:
    text = (
        "base: &list {apiVersion: v1, kind: List}\n<<: *list\n"
        "items: [{apiVersion: v1, kind: A, metadata: {name: first}}]\n"
        "items: [{apiVersion: v1, kind: A, metadata: &shared {name: second}},\n"
        "        {apiVersion: v1, kind: B, metadata: *shared}]\n"
    )
    assert read(text) == [("in: document 1: items[0]", "second"), ("in: document 1: items[1]", "second")]


def test_what_came_before_a_bad_item_is_kept_and_the_bad_item_is_named(loader: str) -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [item("a"), 3, item("c")]})
    assert read(text) == [("in: document 1: items[0]", "a"), ("error", "in: document 1: items[1] is not an object")]


def test_a_yaml_error_later_in_a_list_wins_over_a_bad_item_as_when_read_whole(loader: str) -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- 3\n- {apiVersion: v1, kind: A, metadata: {name: a}}\n- [\n"
    ((where, message),) = read(text)
    assert where == "error"
    assert re.match(r"^in: document 1: line 7, column 1: ", message), message


def test_a_list_without_a_kind_is_refused_before_its_items(loader: str) -> None:
    text = "apiVersion: v1\nitems:\n- 3\n"
    assert read(text) == [("error", "in: document 1: missing apiVersion or kind")]


@pytest.mark.parametrize("chunk", [1, 7])
def test_a_pipe_that_trickles_reads_the_same_even_inside_a_multibyte_character(loader: str, chunk: int) -> None:
    names = ["café", "日本", "ok"]
    text = "".join(f"---\n{yaml.safe_dump(item(name), allow_unicode=True)}" for name in names)
    assert read(text, chunk=chunk) == [(f"in: document {n}", name) for n, name in enumerate(names, start=1)]


def test_invalid_utf8_is_named_at_its_offset_in_the_whole_input_after_what_came_before(loader: str) -> None:
    first = yaml.safe_dump(item("a")).encode()
    data = first + b"---\nkind: " + b"x" * 200_000 + b"\xff\n"
    assert read(data) == [
        ("in: document 1", "a"),
        ("error", f"cannot read in: 'utf-8' codec can't decode byte 0xff in position {len(first) + 10 + 200_000}: "
         "invalid start byte"),
    ]  # fmt: skip


TRICKY_YAML = """\
apiVersion: v1
kind: List
defaults: &defaults {namespace: apps, labels: &labels {team: a}}
items:
- &first
  apiVersion: v1
  kind: ConfigMap
  metadata: {<<: *defaults, name: one, annotations: *labels}
  data: {empty: , "quoted": 'yes', plain: yes, number: 010, float: 1e3, date: 2026-10-02, tilde: ~, seq: [a, *labels]}
- apiVersion: v1
  kind: ConfigMap
  metadata: {<<: [*defaults], name: two}
  data: !!map {binary: !!binary aGVsbG8=, set: !!set {a, b}, omap: !!omap [x: 1, y: 2], str: !!str 3}
  copy: *first
- {apiVersion: v1, kind: Secret, metadata: {name: "three\\u00e9\\t", labels: {? complex : key}}}
---
&doc {apiVersion: v1, kind: ConfigMap, metadata: {name: four}}
--- !!map
apiVersion: v1
kind: ConfigMap
metadata: {name: five}
"""


def test_anchors_merges_tags_and_scalars_are_read_as_pyyaml_reads_them(loader: str) -> None:
    whole = list(yaml.load_all(TRICKY_YAML, Loader=yaml.SafeLoader))
    expected = [*whole[0]["items"], *whole[1:]]
    assert list(iter_judged(stream(TRICKY_YAML), source="in", judge=lambda _, body: body)) == expected
    assert expected[0]["metadata"] == {"namespace": "apps", "labels": {"team": "a"}, "name": "one",
                                       "annotations": {"team": "a"}}  # fmt: skip


@pytest.mark.parametrize("path", [EXAMPLES, *CORPUS], ids=lambda path: path.name)
def test_the_objects_read_a_piece_at_a_time_are_those_pyyaml_reads_whole(path: Path, loader: str) -> None:
    text = path.read_text(encoding="utf-8")
    whole = [document for document in yaml.load_all(text, Loader=yaml.SafeLoader) if document is not None]
    streamed = list(iter_judged(stream(text), source="in", judge=lambda _, body: body))
    assert streamed == whole
    listing = yaml.safe_dump({"apiVersion": "v1", "items": whole, "kind": "List", "metadata": {}})
    assert list(iter_judged(stream(listing), source="in", judge=lambda _, body: body)) == whole


@pytest.mark.parametrize("path", [EXAMPLES, *CORPUS], ids=lambda path: path.name)
def test_the_pure_python_loader_reads_what_libyaml_reads(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def records() -> list[tuple[tuple[str, ...], object, bool]]:
        judged = assess_stream(stream(path.read_bytes()), source="in", target=None, keep=verdict_record)
        return [(entry.notes, entry.kept, entry.failed) for entry in judged]

    expected = records()
    monkeypatch.setattr(documents, "LOADER", yaml.SafeLoader)
    assert records() == expected
    assert any(kept for _, kept, _ in expected)


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: [unclosed\n",
        "apiVersion: v1\nkind: A\nmetadata: {name: a}\n---\n: : :\n  - x\n",
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: A, metadata: *nowhere}\n",
        "a: 1\na: [\n",
    ],
)
def test_both_loaders_name_the_same_document_and_line(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def where() -> str:
        (error,) = [message for kind, message in read(text) if kind == "error"]
        return re.sub(r"(line \d+, column \d+): .*", r"\1", error)

    expected = where()
    monkeypatch.setattr(documents, "LOADER", yaml.SafeLoader)
    assert where() == expected


def kubectl_list(count: int) -> bytes:
    """`kubectl get kustomizations -A -o yaml` of `count` objects of about 5 KB each (managedFields and all)."""
    body = kustomization("NAME", applied=f"main@sha1:{SHA_NEW}", conditions=ready(f"main@sha1:{SHA_NEW}"))
    body["metadata"]["managedFields"] = [
        {"manager": f"manager-{n}", "operation": "Update", "fieldsV1": {f"f:field{i}": {} for i in range(40)}}
        for n in range(4)
    ]
    template = yaml.safe_dump([body])
    items = "".join(template.replace("NAME", f"ks-{index}") for index in range(count))
    return f"apiVersion: v1\nitems:\n{items}kind: List\nmetadata: {{}}\n".encode()


def traced_peak(data: bytes) -> int:
    """The most memory Python held at once while `data` was read and judged, keeping only each verdict's phase."""
    tracemalloc.start()
    try:
        judged = assess_stream(stream(data), source="in", target=SHA_NEW, keep=lambda obj, result: result.phase)
        assert {entry.kept for entry in judged} == {Phase.READY}
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_list_is_read_without_holding_its_objects(loader: str) -> None:
    """Each item's memory is released once it is judged: five times the items cost a few bytes more per item,
    where a List parsed whole takes several times its text."""
    small, large = kubectl_list(60), kubectl_list(300)
    traced_peak(small)  # the first pass pays for what is made once (compiled patterns, caches)
    growth = traced_peak(large) - traced_peak(small)
    assert growth < (len(large) - len(small)) / 8, (growth, len(large) - len(small))


@pytest.mark.parametrize("depth", [5000, 100_000])
def test_nesting_too_deep_to_read_is_named_not_a_traceback(loader: str, depth: int) -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: " + "[" * depth + "]" * depth + "\n"
    ((where, message),) = read(text)
    assert where == "error"
    assert message.startswith("in: document 1: "), message
    assert "nest" in message


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nkind: A\nmetadata: {name: &x a, namespace: &x b}\n",
        "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: A, metadata: *nowhere}\n",
        "apiVersion: v1\nkind: A\nmetadata: !!int {name: a}\n",
        "apiVersion: v1\nkind: A\nmetadata: {[a]: b}\n",
    ],
)
def test_composer_and_constructor_errors_are_pyyamls(loader: str, text: str) -> None:
    with pytest.raises(yaml.YAMLError) as raised:
        list(yaml.load_all(text, Loader=yaml.SafeLoader))
    error = raised.value
    assert isinstance(error, yaml.MarkedYAMLError)
    assert error.problem_mark is not None
    expected = f"in: document 1: line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1}: "
    assert read(text) == [("error", f"{expected}{error.problem}")]
