"""``b12dx explain`` and ``b12dx knowledge``: read the knowledge base from the terminal."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from b12dx.cli.io import show
from b12dx.errors import LookupError_
from b12dx.knowledge.consistency import cited_source_ids
from b12dx.knowledge.loader import load_knowledge

# Shown as the title alone: a source's file is the project's own copy of a seed article.
_SKIP = {"id", "sources", "file"}
# Not a topic of its own: every code of every topic, as health records are matched.
CODES = "codes"


def listing(topic: str | None, console: Console | None = None, as_json: bool = False) -> None:
    console = console or Console()
    kb = load_knowledge()
    topics = kb.topics()
    if as_json:
        _print_json(listing_json(topic))
        return
    if topic is None:
        table = Table(title=f"b12dx knowledge base {kb.version}", title_justify="left")
        table.add_column("Topic")
        table.add_column("Entries", justify="right")
        for name, entries in topics.items():
            table.add_row(name, str(len(entries)))
        show(console, table, "Topic")
        console.print(
            "b12dx knowledge TOPIC lists a topic; b12dx knowledge codes lists the code tables "
            "(LOINC, SNOMED CT, ICD-10, ICD-10-CM, RxNorm, ATC) that health records are read with; "
            "b12dx explain ID explains an entry."
        )
        return
    if topic == CODES:
        code_tables(console)
        return
    if topic not in topics:
        accepted = ", ".join([*topics, CODES])
        raise LookupError_(f"unknown topic {topic!r} (accepted: {accepted})")
    table = Table(title=topic, title_justify="left")
    table.add_column("id")
    table.add_column("What it is")
    for key, entry in topics[topic].items():
        label = next(
            (str(getattr(entry, f)) for f in ("name", "title", "text") if getattr(entry, f, None)),
            "",
        )
        table.add_row(key, label)
    show(console, table, "id")


def listing_json(topic: str | None) -> list[dict[str, Any]]:
    """What ``listing`` shows, as JSON: the topics with their number of entries, a topic's
    entries whole (each with its id), or every code."""
    kb = load_knowledge()
    topics = kb.topics()
    if topic is None:
        return [{"topic": name, "entries": len(entries)} for name, entries in topics.items()]
    if topic == CODES:
        return [
            {"topic": name, "entry": key, "system": code.system, "code": code.code,
             "display": code.display, "verified": code.verified}
            for name, entries in topics.items()
            for key, entry in entries.items()
            for code in getattr(entry, "codes", None) or []
        ]  # fmt: skip
    if topic not in topics:
        accepted = ", ".join([*topics, CODES])
        raise LookupError_(f"unknown topic {topic!r} (accepted: {accepted})")
    return [
        {"id": key, **entry.model_dump(mode="json", exclude_none=True)}
        for key, entry in topics[topic].items()
    ]


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def code_tables(console: Console) -> None:
    """Every code in the knowledge base: what a FHIR or OMOP record's code is read as."""
    kb = load_knowledge()
    table = Table(title="Code tables", title_justify="left")
    for column in ("Topic", "Entry", "System", "Code", "Display", "Verified"):
        table.add_column(column)
    for topic, entries in kb.topics().items():
        for key, entry in entries.items():
            for code in getattr(entry, "codes", None) or []:
                verified = "yes" if code.verified else "no"
                table.add_row(topic, key, code.system, code.code, code.display, verified)
    show(console, table, "Entry", "Code")


def explain(entry_id: str, console: Console | None = None) -> None:
    console = console or Console()
    kb = load_knowledge()
    found = [
        (topic, entries[entry_id]) for topic, entries in kb.topics().items() if entry_id in entries
    ]
    if not found:
        raise LookupError_(
            f"nothing in the knowledge base is called {entry_id!r} "
            "(accepted: any id listed by `b12dx knowledge TOPIC`)"
        )
    for topic, entry in found:
        console.print(f"[bold]{entry_id}[/] [dim]({topic})[/]")
        rows = Table.grid(padding=(0, 1))
        rows.add_column(no_wrap=True)
        rows.add_column(overflow="fold")
        for name, value in entry.model_dump(exclude_none=True).items():
            if name in _SKIP or value in ([], {}, ""):
                continue
            rows.add_row(f"  [bold]{name.replace('_', ' ')}[/]", _readable(value))
        console.print(rows)
        for sid in dict.fromkeys(cited_source_ids(entry)):
            src = kb.sources[sid]
            # A seed article is credited by its title: its file is the project's own
            # copy, which no user has.
            where = src.url or (f"PMID {src.pmid}" if src.pmid else "")
            sources = Table.grid(padding=(0, 1))
            sources.add_column(no_wrap=True)
            sources.add_column(overflow="fold")
            sources.add_row(
                "  [dim]source[/]", f"{sid}: {src.title}" + (f" — {where}" if where else "")
            )
            sources.add_row("", f"[italic]{src.statement}[/]")
            console.print(sources)


def _readable(value: object, depth: int = 0) -> str:
    """A knowledge value as a person reads it: lists as lines or a comma list, mappings as
    "key: value", never a Python repr."""
    if isinstance(value, dict):
        parts = [f"{k.replace('_', ' ')}: {_readable(v, depth + 1)}" for k, v in value.items()]
        return ("; " if depth else "\n").join(parts)
    if isinstance(value, list | tuple):
        items = [_readable(v, depth + 1) for v in value]
        if all(not isinstance(v, dict | list | tuple) for v in value):
            return ", ".join(items)
        return "\n".join(f"- {item}" for item in items)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())
