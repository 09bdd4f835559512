"""Nothing in the repository names a path of the machine it was made on: a test, a doc or
a script that reads a file under someone's home folder works there and nowhere else (18 tests once
errored on any other machine). Shared data is ``../shared`` from the project root, or a
fixture. System locations a package manager defines (``/usr/lib/postgresql``) are not
a machine's own and are allowed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A home or workspace directory, or pytest's temporary folders, written as an absolute
# path (not the tail of a web address, where such a folder name is someone else's).
MACHINE_PATH = re.compile(
    r"(?<![\w.:/])/(work|root|home|Users)/|" + "pytest" + r"-of-|\b[A-Z]:\\Users\\"
)


def tracked_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an sdist): nothing to scan")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def test_no_tracked_file_names_a_path_of_a_machine() -> None:
    found = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary (images, archives): no paths to read
        for n, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not found, "paths of a machine in the repository:\n" + "\n".join(found)


# The examples are put together here, so that this file names no path itself.
HOME, WORKSPACE = "/" + "home" + "/alice", "/" + "work" + "/shared"


@pytest.mark.parametrize(
    ("line", "names_a_machine"),
    [
        (f"data = Path('{HOME}/b12dx/tests/fixtures')", True),
        (f"cp -r {WORKSPACE} ../shared", True),
        ("tmp = '" + "/tmp" + "/pytest" + "-of-root/pytest-3/x'", True),
        ("C:" + "\\Users\\bob\\b12dx", True),
        ("see https://example.org/" + "home" + "/index.html", False),
        ("initdb in /usr/lib/postgresql/*/bin", False),
        ("shared data is at ../shared", False),
    ],
)
def test_the_scan_tells_a_machine_path_from_the_rest(line: str, names_a_machine: bool) -> None:
    assert bool(MACHINE_PATH.search(line)) is names_a_machine
