"""Read a patient record from a file or standard input, with clear errors."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from b12dx.errors import InputError
from b12dx.jsonio import parse_json
from b12dx.private_files import owner_only_from_now


def read_record(path: str) -> Any:
    """The JSON in ``path`` ('-' for standard input)."""
    if path == "-":
        return parse_json(sys.stdin.read(), "standard input")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.single("", f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.single("", f"cannot read {path}: {exc}") from None
    return parse_json(text, path)


def parse_date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError.single(option, f"{value!r} is not a date", "YYYY-MM-DD") from None


# One rule for every command that writes files (backup, patient export, fhir-import,
# screen, synth): what is there already is kept unless --force says to overwrite it.
FORCE = "--force"


def output_file(path: Path, option: str, force: bool) -> Path:
    """``path`` (expanded) when a file may be written there: a new name in a folder that
    exists, or an existing file with ``--force``."""
    path = path.expanduser()
    owner_only_from_now()  # what is written holds patient data (private_files)
    if path.is_dir() or not path.parent.is_dir():
        raise InputError.single(
            option, f"cannot write {path}", "a file name in a folder that exists"
        )
    if path.exists() and not force:
        raise InputError.single(
            option, f"{path} already exists", f"a new file name, or {FORCE} to overwrite it"
        )
    return path


def output_folder(path: Path, option: str, force: bool) -> Path:
    """``path`` (expanded) when results may be written into it: a new or empty folder, or
    one that holds files with ``--force``. The folder is not made here."""
    path = path.expanduser()
    owner_only_from_now()  # what is written holds patient data (private_files)
    if path.exists() and not path.is_dir():
        raise InputError.single(option, f"{path} is a file", "a folder for the results")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise InputError.single(
            option,
            f"{path} is not empty",
            f"a new or empty folder, or {FORCE} to write into it (files of the same name "
            "are replaced)",
        )
    return path


READABLE = 12


def show(console: Console, table: Table, *headers: str) -> None:
    """Print a list with the columns in ``headers`` kept whole (``whole``). Piped (Rich
    would lay it out in 80 columns) each row is one line, however long; at a terminal it
    fits the window, wider only when the ids cannot fit in it, rather than cut them."""
    whole(table, *headers)
    wide = console.options.update_width(10_000)
    # At a terminal: the narrowest the table goes with the ids whole and each other
    # column at least READABLE wide (or its longest word, if shorter); Rich folds the rest.
    need = table._extra_width + sum(
        m.maximum
        if not console.is_terminal  # piped: one row a line, for grep and cut
        else min(m.minimum, m.maximum if column.header in headers else READABLE)
        for column in table.columns
        for m in [table._measure_column(console, wide, column)]
    )
    width = console.width
    if need <= width:
        console.print(table)
        return
    console.width = need  # print() never goes wider than the console
    try:
        console.print(table)
    finally:
        console.width = width


def whole(table: Table, *headers: str) -> Table:
    """``table`` (a list for the terminal or a pipe) with no cell cut short: the columns
    named in ``headers`` (ids, codes) keep each value whole on one line, since an id wrapped
    or cut off cannot be copied or searched for; every other column wraps, folding a word
    longer than itself, where Rich would otherwise crop it with an ellipsis."""
    for column in table.columns:
        if column.header in headers:
            column.no_wrap, column.overflow = True, "fold"
            longest = [cell_len(str(c)) for c in (*column.cells, column.header)]
            column.min_width = max(longest)
        else:
            column.no_wrap, column.overflow = False, "fold"
    return table
