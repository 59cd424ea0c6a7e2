"""Allows `python -m fluxmon`, which is what the git hooks call when no console script is on PATH."""

from fluxmon.cli import main

raise SystemExit(main())
