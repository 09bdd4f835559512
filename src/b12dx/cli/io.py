"""Read a patient record from a file or standard input, with clear errors."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

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
