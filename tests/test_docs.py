"""The documentation a newcomer reads is true: every command the README names exists,
its links lead somewhere, the quick start is what CI runs, and the repository holds
what a cared-for project holds (a licence, a changelog, type information) and nothing
stray."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import typer

from b12dx.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


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


def test_every_command_the_readme_names_exists() -> None:
    commands = _commands()
    named = _named_commands(README)
    assert len(named) > 30  # the reference names them all
    for command, sub in named:
        assert command in commands, f"the README names `b12dx {command}`, which does not exist"
        if commands[command] and sub is not None and not sub.startswith("-"):
            # A group's next word is one of its subcommands (or a placeholder in capitals,
            # which the pattern does not match).
            assert sub in commands[command], f"`b12dx {command} {sub}` does not exist"


def test_the_readme_says_how_to_run_b12dx_from_the_virtual_environment() -> None:
    assert ".venv/bin/b12dx" in README
    assert "source .venv/bin/activate" in README


def test_the_quick_start_is_what_ci_runs() -> None:
    quick = README[README.index("## Quick start") : README.index("## Command reference")]
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


def test_relative_links_in_the_docs_lead_to_files() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CHANGELOG.md"]
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
            checked += 1
    assert checked >= 5
    assert "docs/index.md" in README
    index = (ROOT / "docs" / "index.md").read_text()
    for doc in sorted((ROOT / "docs").glob("*.md")):
        if doc.name != "index.md":
            assert f"]({doc.name})" in index, f"docs/index.md does not list {doc.name}"


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
        "constraints.txt",
        "docs",
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
