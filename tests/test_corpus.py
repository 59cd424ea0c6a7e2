"""Real Flux objects, taken from Flux's own repositories, through the real `fluxmon assess`.

tests/fixtures/flux-corpus/ holds objects with status from the flux CLI's testdata and from the docs/spec pages of
source-, kustomize- and helm-controller (their `kubectl describe` outputs turned into YAML). Each document names
its repository, path and commit, and says what `fluxmon assess` must answer without and with `--commit`:

    # fluxcd/flux2 cmd/flux/testdata/get/objects.yaml@da2d22d3: GitRepository podinfo
    # expect: Ready | --commit 696f056d: Ready
    # note: why, and where fluxmon differs from kstatus on purpose

The expectations come from what the controllers mean by what they write, not from fluxmon's own output: this is
the test that fluxmon agrees with Flux, where the others only show that it agrees with itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from fluxmon.cli import main
from fluxmon.core.objects import FLUX_KINDS

CORPUS = Path(__file__).parent / "fixtures" / "flux-corpus"
_SOURCE = re.compile(r"^# fluxcd/[\w-]+ \S+@[0-9a-f]{8}\b", re.M)
_EXPECT = re.compile(r"^# expect: (?P<plain>\w+) \| --commit (?P<commit>[0-9a-f]{7,40}): (?P<with_commit>\w+)$", re.M)
_LONG_HEX = re.compile(r"\b[0-9a-f]{40,128}\b")


@dataclass(frozen=True, kw_only=True, slots=True)
class Case:
    """One corpus document and what fluxmon must say about it."""

    where: str
    plain: str
    commit: str
    with_commit: str


def corpus_cases(path: Path) -> list[Case]:
    """The documents of one corpus file, in order; every document must name its source and its expectations."""
    cases = []
    for number, document in enumerate(re.split(r"^---$", path.read_text(encoding="utf-8"), flags=re.M)[1:]):
        source = _SOURCE.search(document)
        expect = _EXPECT.search(document)
        where = f"{path.name} document {number + 1}"
        assert source, f"{where} does not name its repository, path and commit"
        assert expect, f"{where} has no `# expect:` line"
        cases.append(
            Case(where=where, plain=expect["plain"], commit=expect["commit"], with_commit=expect["with_commit"])
        )
    return cases


def assess(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, str]]:
    """`fluxmon assess` through its real entry point; one JSON record per Flux object, in input order."""
    main(["assess", *args])
    captured = capsys.readouterr()
    assert captured.err == ""  # every document is a Flux object, and none is unreadable
    return [json.loads(line) for line in captured.out.splitlines()]


FILES = sorted(CORPUS.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_assess_agrees_with_flux_on_every_real_object(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = corpus_cases(path)
    records = assess(capsys, str(path))
    assert len(records) == len(cases)
    wrong = [
        f"{case.where} ({record['kind']} {record['name']}): {record['phase']} {record['reason']}, expected {case.plain}"
        for case, record in zip(cases, records, strict=True)
        if record["phase"] != case.plain
    ]
    for commit in sorted({case.commit for case in cases}):
        judged = assess(capsys, "--commit", commit, str(path))
        wrong += [
            f"{case.where} ({record['kind']} {record['name']}) --commit {commit}: {record['phase']} "
            f"{record['reason']}, expected {case.with_commit}"
            for case, record in zip(cases, judged, strict=True)
            if case.commit == commit and record["phase"] != case.with_commit
        ]
    assert not wrong, "\n".join(wrong)


def test_the_corpus_is_large_and_covers_every_kind(capsys: pytest.CaptureFixture[str]) -> None:
    kinds = {record["kind"] for path in FILES for record in assess(capsys, str(path))}
    assert sum(len(corpus_cases(path)) for path in FILES) >= 60
    assert kinds == set(FLUX_KINDS)


def test_the_table_shortens_hex_in_messages_as_flux_get_does(capsys: pytest.CaptureFixture[str]) -> None:
    main(["assess", "--output", "table", str(CORPUS / "source-controller-docs.yaml")])
    table = capsys.readouterr().out
    assert not _LONG_HEX.search(table)
    assert "stored artifact for revision 'master@sha1:132f4e71'" in table
    assert "master@sha1:132f4e71   " in table  # the REVISION column, as `flux get` prints it
