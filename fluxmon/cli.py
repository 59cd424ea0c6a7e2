"""The `fluxmon` command line: the composition root that builds each verb from core/ (and, lazily, the UI).

Exit statuses are part of the interface, for scripts and CI:
    0  success (for `assess`: nothing failed)
    1  a Flux object failed
    2  usage, input, config or cluster error
Every error a user can cause ends as one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fluxmon import __version__
from fluxmon.core.documents import iter_objects
from fluxmon.core.errors import FluxmonError, InputError
from fluxmon.core.objects import FluxObject, is_flux_body, parse_flux_object
from fluxmon.core.render import json_lines, table
from fluxmon.core.revision import normalize_commit
from fluxmon.core.verdict import Phase, Verdict, verdict

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return command(args)
    except FluxmonError as error:
        print(f"fluxmon: {error.title}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `fluxmon assess | head`: the reader left; nothing is wrong with us.
        sys.stderr.close()
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxmon",
        description="Tells you whether Flux has deployed the commit you pushed, and if not, why.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = parser.add_subparsers(title="commands", metavar="COMMAND")

    assess = verbs.add_parser(
        "assess",
        help="judge Flux objects read from YAML or JSON (kubectl get -o yaml)",
        description=(
            "Judge each Flux object in the input: Ready, Failed, Progressing, Waiting, Pending, Suspended or "
            "Unknown. With --commit, an object counts as Ready only once it has applied that commit. "
            "Exits 1 when any object failed, 2 on unreadable input."
        ),
    )
    assess.add_argument("files", nargs="*", metavar="FILE", help="files to read; none, or -, reads stdin")
    assess.add_argument("--commit", metavar="SHA", help="judge relative to this pushed commit (7 to 40 hex)")
    assess.add_argument("--output", "-o", choices=("json", "table"), default="json", help="default: json lines")
    assess.set_defaults(command=run_assess)
    return parser


def run_assess(args: argparse.Namespace) -> int:
    """`fluxmon assess`: one verdict per Flux object in the input."""
    target = None
    if args.commit:
        try:
            target = normalize_commit(args.commit)
        except ValueError as exc:
            raise InputError(f"--commit: {exc}") from exc
    rows: list[tuple[FluxObject, Verdict]] = []
    for name, text in _read_inputs(args.files or ["-"]):
        for body in iter_objects(text, source=name):
            if not is_flux_body(body):
                print(f"fluxmon: skipped {_describe(body)}: not a Flux object", file=sys.stderr)
                continue
            try:
                obj = parse_flux_object(body)
            except ValueError as exc:
                raise InputError(f"{name}: {exc}") from exc
            rows.append((obj, verdict(obj, target)))
    sys.stdout.write(table(rows) if args.output == "table" else json_lines(rows))
    sys.stdout.flush()
    return EXIT_FAILED if any(result.phase is Phase.FAILED for _, result in rows) else EXIT_OK


def _read_inputs(names: Sequence[str]) -> list[tuple[str, str]]:
    inputs = []
    for name in names:
        if name == "-":
            inputs.append(("<stdin>", sys.stdin.read()))
            continue
        try:
            inputs.append((name, Path(name).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise InputError(f"cannot read {name}: {reason}") from exc
    return inputs


def _describe(body: Mapping[str, Any]) -> str:
    """`v1 ConfigMap apps/settings`, for the note on a skipped object."""
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    name = "/".join(str(part) for part in (metadata.get("namespace"), metadata.get("name")) if part)
    return f"{body.get('apiVersion')} {body.get('kind')} {name}".strip()
