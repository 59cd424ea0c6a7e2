"""Flux revision strings, and whether one of them names a given commit.

Flux writes revisions in several shapes (RFC-0005 and before it), and the whole product hinges on reading them
right: an object is only "deployed" when its revision names the pushed commit.

    main@sha1:<40 hex>           a branch; the pointer may hold slashes (feature/x@sha1:...)
    refs/pull/420/head@sha1:...  an absolute ref, when spec.ref.name is used
    sha1:<hex>                   a detached commit
    latest@sha256:<64 hex>       OCI artifacts, SHA-256 repositories
    main/<sha>                   the legacy form, still seen on older objects
    6.0.3+4e5cbb7b97d0           a HelmChart version built from a GitRepository with reconcileStrategy: Revision
                                 (the chart version, then the first 12 hex of the commit)
    6.0.3+4e5cbb7b97d0.2         the same with spec.valuesFiles: the HelmChart's generation is appended

The rule for matching: a full-length digest matches only the same full commit. A shorter digest counts only
where Flux itself truncates (the 12-hex Helm suffix), so an unrelated short hash that happens to be a prefix of
the pushed commit never passes for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HELM_COMMIT_SUFFIX_LENGTH = 12
"""Flux appends this many hex digits of the commit to a chart version built from git."""

MIN_ABBREVIATED_COMMIT_LENGTH = 7
"""The shortest commit a user may type, as git itself abbreviates."""

SHORT_SHA_LENGTH = 7
"""The one short-sha rule: a commit we name (in a message, a title, a notification) is shown as git abbreviates
it, 7 hex, which is what the user saw in `git push` and `git log --oneline`. A Flux *revision* is shown as the flux
CLI shows it (REVISION_DISPLAY_LENGTH), so that it reads the same as `flux get`; its first 7 hex are the same."""
REVISION_DISPLAY_LENGTH = 8
"""The flux CLI shows eight hex digits in a revision: main@sha1:696f056d."""

_FULL_DIGEST_LENGTHS = {"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}
_HEX = re.compile(r"[0-9a-f]+")
_HELM_SUFFIX = re.compile(r"^(?P<version>[^+]+)\+(?P<hash>[0-9a-f]{12})(?:\.[0-9]+)?$")
"""`<version>+<12 hex>`, and `.<generation>` after it when the HelmChart has spec.valuesFiles (fluxcd/source-controller
internal/controller/helmchart_controller.go@39b711b1 buildFromTarballArtifact)."""
_LEGACY = re.compile(r"^(?P<pointer>.+)/(?P<hash>[0-9a-f]{40}|[0-9a-f]{64})$")
_BARE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_HEX_IN_TEXT = re.compile(r"\b[a-f0-9]{40,128}\b", re.ASCII)


@dataclass(frozen=True, kw_only=True, slots=True)
class Revision:
    """One parsed revision string; `digest` is empty when the text carries no commit at all (e.g. `v1.16.2`)."""

    text: str
    pointer: str = ""
    algorithm: str = ""
    digest: str = ""
    truncated: bool = False
    """True when Flux shortened the digest itself (the Helm chart suffix), so a prefix match is the best there is."""
    chart_version: str = ""

    @property
    def has_commit(self) -> bool:
        """Whether this revision names a commit or artifact digest at all."""
        return bool(self.digest)

    def short(self) -> str:
        """The flux CLI's short form: `main@sha1:696f056d`, `sha1:696f056d`, `6.0.3+4e5cbb7b97d0`."""
        if not self.digest or self.chart_version:
            return self.text
        digest = self.digest[:REVISION_DISPLAY_LENGTH]
        algorithm = f"{self.algorithm}:" if self.algorithm else ""
        pointer = f"{self.pointer}@" if self.pointer else ""
        return f"{pointer}{algorithm}{digest}"


def short_sha(commit: str) -> str:
    """A commit as git abbreviates it (SHORT_SHA_LENGTH); "" stays ""."""
    return commit[:SHORT_SHA_LENGTH]


def parse_revision(text: str) -> Revision:
    """Parse any revision Flux writes; unknown shapes give a Revision with no digest, never an error."""
    text = text.strip()
    if not text:
        return Revision(text="")
    if match := _HELM_SUFFIX.match(text):
        return Revision(
            text=text,
            digest=match["hash"],
            algorithm="sha1",
            truncated=True,
            chart_version=match["version"],
        )
    if ":" in text:
        # RFC-0005: "<pointer>@<algo>:<hash>" or "<algo>:<hash>"; the hash is the text after the last ':'.
        head, _, digest = text.rpartition(":")
        pointer, _, algorithm = head.rpartition("@")
        digest = digest.lower()
        if algorithm and _HEX.fullmatch(digest):
            return Revision(text=text, pointer=pointer, algorithm=algorithm, digest=digest)
        return Revision(text=text)
    if match := _LEGACY.match(text):
        return Revision(text=text, pointer=match["pointer"], digest=match["hash"])
    if _BARE.match(text):
        return Revision(text=text, digest=text)
    return Revision(text=text)


def is_full_digest(revision: Revision) -> bool:
    """Whether the digest has the full length for its algorithm (a length alone decides when none is named)."""
    if revision.algorithm in _FULL_DIGEST_LENGTHS:
        return len(revision.digest) == _FULL_DIGEST_LENGTHS[revision.algorithm]
    return len(revision.digest) in _FULL_DIGEST_LENGTHS.values()


def normalize_commit(commit: str) -> str:
    """Lower-case a user's commit and check that it is hex of a usable length; raises ValueError otherwise.

    A usable length is an abbreviation of a SHA-1 (7 to 40 hex digits) or a whole SHA-256 (64): 41 digits are
    a typo, and would otherwise match nothing, silently.
    """
    commit = commit.strip().lower()
    sha1 = _FULL_DIGEST_LENGTHS["sha1"]
    usable = MIN_ABBREVIATED_COMMIT_LENGTH <= len(commit) <= sha1 or len(commit) == _FULL_DIGEST_LENGTHS["sha256"]
    if not _HEX.fullmatch(commit) or not usable:
        raise ValueError(
            f"not a commit sha: {commit[:80]!r} (need {MIN_ABBREVIATED_COMMIT_LENGTH} to {sha1} hex digits, "
            f"or a full SHA-256)"
        )
    return commit


def revision_matches(revision: str | Revision, commit: str) -> bool:
    """Whether a Flux revision names `commit` (a full sha, or an abbreviation a user typed).

    A full digest in the revision must equal the full commit, or start with a commit the user abbreviated.
    A short digest in the revision counts only when Flux truncated it itself (the Helm chart suffix).
    """
    parsed = revision if isinstance(revision, Revision) else parse_revision(revision)
    if not parsed.digest:
        return False
    try:
        commit = normalize_commit(commit)
    except ValueError:
        return False
    if is_full_digest(parsed):
        if len(commit) in _FULL_DIGEST_LENGTHS.values():
            return parsed.digest == commit
        return parsed.digest.startswith(commit)  # the user typed an abbreviation
    if parsed.truncated:
        return commit.startswith(parsed.digest) or parsed.digest.startswith(commit)
    return False


def short_revision(text: str) -> str:
    """The display form of a revision string, as `flux get` prints it."""
    return parse_revision(text).short()


def truncate_hex(text: str) -> str:
    """Shorten every SHA-1 to SHA-512 hex string (40 to 128 digits) in free text to 8, as `flux get` does with
    the MESSAGE column (fluxcd/flux2 internal/utils/hex.go@da2d22d3 `TruncateHex`)."""
    return _HEX_IN_TEXT.sub(lambda match: match[0][:REVISION_DISPLAY_LENGTH], text)
