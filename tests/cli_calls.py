"""Calling the command line in this process, as a user types it: the exit status and
what it printed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from b12dx.cli.app import main


def call(capsys: pytest.CaptureFixture[str], argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``b12dx argv``: (exit status, standard output, standard error)."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
