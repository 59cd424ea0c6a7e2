"""Every revision shape Flux writes (RFC-0005 and before), and the matching rule that guards against prefixes."""

from __future__ import annotations

import pytest

from fluxmon.core.revision import normalize_commit, parse_revision, revision_matches, short_revision, truncate_hex

SHA = "7d1f6c2a9b8e4d3c2b1a09f8e7d6c5b4a3928170"
SHA256 = "6c3b3a1fbd8e3b1b2f1c2f0b0d9f4e6a5a4c3b2a19080706050403020100ffee"


@pytest.mark.parametrize(
    ("text", "pointer", "algorithm", "digest"),
    [
        (f"main@sha1:{SHA}", "main", "sha1", SHA),
        (f"feature/x@sha1:{SHA}", "feature/x", "sha1", SHA),
        (f"refs/pull/420/head@sha1:{SHA}", "refs/pull/420/head", "sha1", SHA),
        (f"sha1:{SHA}", "", "sha1", SHA),
        (f"main@sha256:{SHA256}", "main", "sha256", SHA256),
        (f"latest@sha256:{SHA256}", "latest", "sha256", SHA256),
        (f"main/{SHA}", "main", "", SHA),
        (f"feature/x/{SHA}", "feature/x", "", SHA),
        (SHA, "", "", SHA),
        (f"MAIN@sha1:{SHA.upper()}", "MAIN", "sha1", SHA),
    ],
)
def test_parses_every_form(text: str, pointer: str, algorithm: str, digest: str) -> None:
    revision = parse_revision(text)
    assert (revision.pointer, revision.algorithm, revision.digest) == (pointer, algorithm, digest)
    assert not revision.truncated


def test_helm_chart_version_with_commit_suffix_is_truncated() -> None:
    revision = parse_revision("6.0.3+4e5cbb7b97d0")
    assert revision.chart_version == "6.0.3"
    assert revision.digest == "4e5cbb7b97d0"
    assert revision.truncated


@pytest.mark.parametrize("text", ["", "v1.16.2", "6.0.3", "6.0.3+build.7", "main@sha1:not-hex", "main/abc123"])
def test_revisions_without_a_commit_have_no_digest(text: str) -> None:
    assert not parse_revision(text).has_commit
    assert not revision_matches(text, SHA)


@pytest.mark.parametrize(
    "text",
    [
        f"main@sha1:{SHA}",
        f"refs/heads/main@sha1:{SHA}",
        f"sha1:{SHA}",
        f"main/{SHA}",
        SHA,
        f"6.0.3+{SHA[:12]}",
    ],
)
def test_every_form_matches_the_full_commit(text: str) -> None:
    assert revision_matches(text, SHA)


def test_user_abbreviation_matches_a_full_digest() -> None:
    assert revision_matches(f"main@sha1:{SHA}", SHA[:7])
    assert revision_matches(f"6.0.3+{SHA[:12]}", SHA[:8])


def test_a_short_digest_that_prefixes_the_commit_is_not_that_commit() -> None:
    # A revision with a short hash (not Flux's own Helm truncation) must never pass for the full commit.
    assert not revision_matches(f"main@sha1:{SHA[:12]}", SHA)
    assert not revision_matches(f"sha1:{SHA[:7]}", SHA)


def test_different_commits_do_not_match() -> None:
    other = "1" + SHA[1:]
    assert not revision_matches(f"main@sha1:{other}", SHA)
    assert not revision_matches(f"6.0.3+{other[:12]}", SHA)
    assert not revision_matches(f"latest@sha256:{SHA256}", SHA)  # an OCI digest is not a git commit


@pytest.mark.parametrize("bad", ["", "abc", "xyz1234", "7d1f6c2a!"])
def test_normalize_commit_refuses_non_commits(bad: str) -> None:
    with pytest.raises(ValueError, match="not a commit sha"):
        normalize_commit(bad)
    assert not revision_matches(f"main@sha1:{SHA}", bad)


def test_short_form_follows_the_flux_cli() -> None:
    assert short_revision(f"main@sha1:{SHA}") == "main@sha1:7d1f6c2a"
    assert short_revision(f"sha1:{SHA}") == "sha1:7d1f6c2a"
    assert short_revision("6.0.3+4e5cbb7b97d0") == "6.0.3+4e5cbb7b97d0"
    assert short_revision("v1.16.2") == "v1.16.2"


# The cases of flux2's own TestTruncateHex (fluxcd/flux2 internal/utils/hex_test.go@da2d22d3).
@pytest.mark.parametrize(
    ("text", "shortened"),
    [
        (SHA, SHA[:8]),
        (SHA256, SHA256[:8]),
        ("f" * 128, "f" * 8),
        (f"sha256:{SHA256}", f"sha256:{SHA256[:8]}"),
        (f"tag@sha256:{SHA256}", f"tag@sha256:{SHA256[:8]}"),
        (f"HEAD/{SHA}", f"HEAD/{SHA[:8]}"),
        ("f" * 150, "f" * 150),  # longer than SHA-512: not a hash
        ("f" * 14, "f" * 14),  # shorter than SHA-1: left alone
        (f"Applied revision: main@sha1:{SHA} to 'apps'", f"Applied revision: main@sha1:{SHA[:8]} to 'apps'"),
        (
            f"stored artifact for revision '{SHA}' and \"{SHA256}\"",
            f"stored artifact for revision '{SHA[:8]}' and \"{SHA256[:8]}\"",
        ),
        (f"chart 6.0.3+{SHA[:12]}", f"chart 6.0.3+{SHA[:12]}"),  # Flux's own 12-hex suffix is already short
        (f"x{SHA}", f"x{SHA}"),  # not a word of its own
        ("which should not be modified", "which should not be modified"),
    ],
)
def test_truncate_hex_in_messages_as_flux_get_does(text: str, shortened: str) -> None:
    assert truncate_hex(text) == shortened
