"""Reading objects from `kubectl get` output: multi-document YAML, JSON, Lists, and every malformed case."""

from __future__ import annotations

import json

import pytest

from fluxmon.core.documents import iter_objects
from fluxmon.core.errors import InputError
from tests.flux_bodies import kustomization


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
