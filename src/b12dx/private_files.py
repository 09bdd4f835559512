"""Files that hold patient data are readable by their owner only, as backups are: a new
folder 0700, a new file 0600, whatever the umask.

SQLite creates a database's -wal, -shm and -journal files with the permissions of the
database file itself, so creating that file 0600 before SQLite opens it covers them too,
including each time SQLite makes them again. An existing file or folder is left as it is
(its owner may have chosen to share it with a group).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import platformdirs

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def data_file(name: str) -> Path:
    """Where b12dx keeps a file by default: ``B12DX_DATA_DIR``, else the user's data
    directory (``platformdirs``: ~/.local/share/b12dx on Linux)."""
    base = os.environ.get("B12DX_DATA_DIR") or platformdirs.user_data_dir("b12dx")
    return Path(base) / name


def make_folder(folder: Path) -> None:
    """``folder`` and any missing parents, each new one readable by the owner only."""
    if folder.is_dir():
        return
    make_folder(folder.parent)
    with contextlib.suppress(FileExistsError):  # another process made it meanwhile
        folder.mkdir(mode=FOLDER_MODE)
        os.chmod(folder, FOLDER_MODE)  # the umask cannot loosen 0700, but may tighten it


def create_file(path: Path) -> bool:
    """An empty ``path`` readable by the owner only, unless it exists; True if made here."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def owner_only_from_now() -> None:
    """Every file and folder this process creates from now on is its owner's only (umask
    tightened to 077), for a command that writes patient data through libraries that take
    no mode (DuckDB, Arrow: screening results, an import's records, an export)."""
    old = os.umask(0o077)
    os.umask(old | 0o077)
