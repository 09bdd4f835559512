"""The documentation a newcomer reads is true: every command the README and the docs
pages name exists, their links lead somewhere, the quick start is what CI runs, the
README stays a short front door that says how to install each extra, every environment
variable is documented, and the repository holds what a cared-for project holds (a
licence, a changelog, type information) and nothing stray. The documentation site
itself (built, link-checked, its command reference current) is tests/test_docs_site.py."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import typer

from b12dx.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _commands() -> dict[str, set[str]]:
    """Top-level command -> its subcommands (empty for a plain command)."""
    root = typer.main.get_command(app)
    out: dict[str, set[str]] = {}
    for name, command in getattr(root, "commands", {}).items():
        out[name] = set(getattr(command, "commands", {}))
    assert "assess" in out
    return out


def _named_commands(text: str) -> list[tuple[str, str | None]]:
    """Each ``b12dx WORD [WORD]`` the text writes as a command (in code), with the word
    after it when that could be a subcommand."""
    code = re.findall(r"```.*?```|`[^`\n]+`", text, flags=re.S)
    found = []
    for chunk in code:
        if chunk.startswith("```python"):
            continue  # the library's API, not the command
        for m in re.finditer(r"(?:^|[\s(/|`$])b12dx ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", chunk):
            found.append((m.group(1), m.group(2)))
    return found


@pytest.mark.parametrize(
    "page", [ROOT / "README.md", *DOCS], ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_command_a_page_names_exists(page: Path) -> None:
    commands = _commands()
    for command, sub in _named_commands(page.read_text()):
        assert command in commands, f"{page.name} names `b12dx {command}`, which does not exist"
        if commands[command] and sub is not None and not sub.startswith("-"):
            # A group's next word is one of its subcommands (or a placeholder in capitals,
            # which the pattern does not match).
            assert sub in commands[command], f"{page.name}: `b12dx {command} {sub}` does not exist"


def test_the_docs_name_every_command() -> None:
    """The README shows the first commands; the docs pages, with the generated command
    reference, name every one of them."""
    named = {c for page in DOCS for c in _named_commands(page.read_text())}
    for command, subs in _commands().items():
        assert command in {c for c, _ in named}, f"no page names `b12dx {command}`"
        for sub in subs:
            assert (command, sub) in named, f"no page names `b12dx {command} {sub}`"
    assert len(_named_commands(README)) >= 5  # the README's first commands


def test_the_readme_is_a_short_front_door() -> None:
    """What b12dx is, the quick start, how to install each extra, first commands and where
    the documentation is: the reference lives in docs/."""
    lines = README.splitlines()
    assert len(lines) < 150, f"the README has {len(lines)} lines: move reference to docs/"
    assert "does not replace a clinician's judgement" in README
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installing = (ROOT / "docs" / "installing.md").read_text()
    for extra in extras:
        command = "pip install -e '.[dev]'" if extra == "dev" else f"pip install 'b12dx[{extra}]'"
        assert command in README, f"the README does not say `{command}`"
        assert command in installing, f"docs/installing.md does not say `{command}`"
    assert "pip install b12dx" in README and "pip install -e '.[web]'" in README
    assert "mkdocs serve" in README and "mkdocs build" in README


def test_every_environment_variable_b12dx_reads_is_documented() -> None:
    """Every B12DX_ variable the package, its scripts, tests or benchmarks read has its
    line on the Installing page."""
    installing = (ROOT / "docs" / "installing.md").read_text()
    read: set[str] = set()
    for folder in ("src", "scripts", "tests", "benchmarks", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in {"", ".py", ".sh"}:
                read |= set(
                    re.findall(r"\bB12DX_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace"))
                )
    assert {"B12DX_DATABASE_URL", "B12DX_CACHE_DIR", "B12DX_SIGN_IN_PER_MINUTE"} <= read
    missing = sorted(v for v in read if f"`{v}`" not in installing)
    assert not missing, f"docs/installing.md does not document {missing}"


def test_the_readme_says_how_to_run_b12dx_from_the_virtual_environment() -> None:
    assert ".venv/bin/b12dx" in README
    assert "source .venv/bin/activate" in README


def test_the_quick_start_is_what_ci_runs() -> None:
    start = README.index("## Quick start")
    quick = README[start : README.index("\n## ", start)]
    assert "bash scripts/demo" in quick and "bash scripts/check" in quick
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/check" in ci
    for script in ("check", "demo"):
        text = (ROOT / "scripts" / script).read_text()
        assert "constraints" in text, f"scripts/{script} installs without constraints.txt"
    assert (ROOT / "constraints.txt").exists()


def test_the_readme_names_what_scripts_check_installs_with_apt() -> None:
    check = (ROOT / "scripts" / "check").read_text()
    for package in ("chromium", "postgresql", "default-jre-headless"):
        assert package in check
        assert package in README


def _anchors(markdown: str) -> set[str]:
    """The ids MkDocs gives a page's headings (its default slugs)."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        out.add(re.sub(r"[-\s]+", "-", slug))
    return out


def test_relative_links_in_the_docs_lead_to_files() -> None:
    pages = [ROOT / "README.md", *DOCS, ROOT / "CHANGELOG.md"]
    checked = 0
    for page in pages:
        for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)]*))?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
            if anchor and target.endswith(".md"):
                headings = _anchors((page.parent / target).read_text())
                assert anchor in headings, f"{page.name} links to missing {target}#{anchor}"
            checked += 1
    assert checked >= 5
    assert "docs/index.md" in README
    index = (ROOT / "docs" / "index.md").read_text()
    for doc in DOCS:
        if doc.name != "index.md":
            assert f"]({doc.name})" in index, f"docs/index.md does not list {doc.name}"


def test_every_figure_table_in_performance_says_when_it_was_measured() -> None:
    """A figure without its date cannot be compared with a later one: the text between
    the heading or table before it and each table names the day (YYYY-MM-DD)."""
    undated, since_last, in_table = [], [], False
    for n, line in enumerate((ROOT / "docs" / "performance.md").read_text().splitlines(), 1):
        if line.startswith("|"):
            if not in_table and not re.search(r"\b20\d\d-\d\d-\d\d\b", "\n".join(since_last)):
                undated.append(f"line {n}: {line[:60]}")
            in_table = True
            continue
        if in_table or line.startswith("#"):
            since_last, in_table = [], False
        since_last.append(line)
    assert not undated, "tables in docs/performance.md without a date:\n" + "\n".join(undated)


def test_the_repository_holds_a_licence_a_changelog_and_type_information() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    licence = (ROOT / "LICENSE").read_text()
    assert project["license"]["text"] == "Apache-2.0"
    assert "Apache License" in licence and "Version 2.0" in licence
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {project['version']}" in changelog
    assert (ROOT / "src" / "b12dx" / "py.typed").exists()


def test_the_repository_root_holds_no_stray_files() -> None:
    expected = {
        ".ci",
        ".gitignore",
        "CHANGELOG.md",
        "LICENSE",
        "README.md",
        "benchmarks",
        "deploy",
        "constraints.txt",
        "docs",
        "mkdocs.yml",
        "pyproject.toml",
        "scripts",
        "src",
        "tests",
    }
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    present = {path.split("/")[0] for path in tracked}
    assert present <= expected, f"unexpected at the root: {sorted(present - expected)}"
