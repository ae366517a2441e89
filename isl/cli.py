"""Shared behaviour of the command-line tools: expected errors print one line and exit 2, not a traceback."""
from __future__ import annotations

import sys
from typing import Callable

from .checkpoint import CheckpointError
from .config import ConfigError
from .data import DatasetNotFoundError

USER_ERRORS = (ConfigError, CheckpointError, DatasetNotFoundError)


def run_cli(main: Callable[[], object]) -> None:
    """Call `main()`; turn the errors a user can fix into a short message on stderr and exit code 2."""
    try:
        main()
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
