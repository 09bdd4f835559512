"""MkDocs hooks of the documentation site (mkdocs.yml ``hooks``).

The changelog page shows CHANGELOG.md, which stays at the root of the repository where
people and release tools look for it: docs/changelog.md holds only a pointer to it,
replaced by the file's text when the site is built, so there is one copy to keep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHANGELOG = ROOT / "CHANGELOG.md"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri == "changelog.md":
        return CHANGELOG.read_text(encoding="utf-8")
    return markdown
