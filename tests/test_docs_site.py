"""The documentation site (mkdocs.yml, docs/) builds and its links lead somewhere: MkDocs
in strict mode fails on a link or anchor to nothing and on a page left out of the
navigation; every relative link and every anchor in the built HTML is then checked
against the built files. The command reference (docs/commands.md) is generated from the
command line by scripts/docs-commands, and must be what the command line says today."""

from __future__ import annotations

import difflib
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "commands.md"


def test_the_command_reference_is_what_the_command_line_says(tmp_path: Path) -> None:
    fresh = tmp_path / "commands.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "docs-commands"), "--out", str(fresh)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    want, have = fresh.read_text(), REFERENCE.read_text()
    diff = "".join(
        list(
            difflib.unified_diff(
                have.splitlines(keepends=True),
                want.splitlines(keepends=True),
                "docs/commands.md",
                "the command line",
            )
        )[:60]
    )
    assert want == have, (
        "docs/commands.md is out of date: run .venv/bin/python scripts/docs-commands\n" + diff
    )
    for heading in ("## b12dx assess", "## b12dx serve", "### b12dx patient add"):
        assert f"\n{heading}\n" in have


class _Page(HTMLParser):
    """The ids of one built page, and every address it links to or loads."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.loads: list[str] = []  # scripts, stylesheets, images: what a browser fetches

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for key in ("id", "name"):
            if found.get(key) and (key == "id" or tag == "a"):
                self.ids.add(str(found[key]))
        href, src = found.get("href"), found.get("src")
        if tag == "a" and href is not None:
            self.links.append(href)
        elif tag == "link" and href is not None:
            self.links.append(href)
            self.loads.append(href)
        if src is not None:
            self.links.append(src)
            self.loads.append(src)


def _read(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_the_site_builds_with_every_page(site: Path) -> None:
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert (site / page.with_suffix(".html").name).exists(), f"{page.name} was not built"
    changelog = (site / "changelog.html").read_text()
    assert "Semantic Versioning" in changelog  # CHANGELOG.md itself, not the pointer to it
    commands = (site / "commands.html").read_text()
    assert 'id="b12dx-patient-add"' in commands


def test_every_link_in_the_built_site_leads_to_a_built_file(site: Path) -> None:
    pages = {path: _read(path) for path in sorted(site.rglob("*.html"))}
    broken, checked = [], 0
    for path, page in pages.items():
        if path.name == "404.html":
            continue  # served at any address, so its links are written from the root
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or link.startswith("//"):
                continue  # another site: not fetched here
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            where = f"{path.relative_to(site)}: {link}"
            if not target.is_file():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _read(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no such anchor)")
            checked += 1
    assert checked > 500, checked
    assert not broken, "broken links in the built site:\n" + "\n".join(broken)


def test_the_site_loads_nothing_from_another_server(site: Path) -> None:
    """It reads offline, from a folder or a closed hospital network."""
    remote = [
        f"{path.relative_to(site)}: {address}"
        for path in sorted(site.rglob("*.html"))
        for address in _read(path).loads
        if urlsplit(address).scheme or address.startswith("//")
    ]
    assert not remote, remote
