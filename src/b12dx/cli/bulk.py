"""``b12dx fhir-import``: a FHIR Bulk Data export -> one patient record per Patient."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from b12dx.cli.io import show
from b12dx.engine.assess import assess
from b12dx.errors import B12dxError, InputError
from b12dx.fhir.read import read_bulk_export
from b12dx.fhir.record import record_from_resources
from b12dx.knowledge.loader import load_knowledge

REPORT = "import-report.json"


def _free_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... the first not yet taken (case-folded)."""
    name, n = base, 2
    while name.casefold() in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name.casefold())
    return name


def _write_atomic(path: Path, text: str) -> None:
    # Write beside the target and rename, so a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_import(
    directory: Path, out: Path | None, as_of: dt.date, with_assessment: bool, profile: str | None
) -> None:
    kb = load_knowledge()
    kb.profile(profile)  # an unknown profile fails before any work
    err = Console(stderr=True)
    export = read_bulk_export(directory)
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError.single("--out", f"cannot create {out}: {exc.strerror}") from None
    report: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "export": str(directory),
        "resources": dict(sorted(export.counts.items())),
        "problems": [{"where": p.where, "problem": p.message} for p in export.problems],
        "patients": [],
        "skipped": [],
    }
    rows: list[tuple[str, ...]] = []
    # File names taken, case-folded as a case-insensitive file system folds them; the
    # report's own name is taken from the start: no record overwrites another, or it.
    taken = {REPORT.removesuffix(".json").casefold()}
    for pid, resources in export:
        try:
            imported = record_from_resources(resources, as_of, kb, shared=export.shared)
        except InputError as exc:
            report["skipped"].append({"patient": f"Patient/{pid}", "reason": str(exc)})
            continue
        entry = {"patient": f"Patient/{pid}", **imported.report()}
        entry["record"] = imported.record
        report["patients"].append(entry)
        if out is not None:
            name = _free_name(_safe(pid), taken)
            entry["file"] = f"{name}.json"
            _write_atomic(out / f"{name}.json", json.dumps(imported.record, indent=2) + "\n")
        else:
            line = {"patient": f"Patient/{pid}", "record": imported.record}
            sys.stdout.write(json.dumps(line) + "\n")
        if with_assessment:
            try:
                result = assess(imported.record, profile=profile, knowledge=kb)
            except B12dxError as exc:
                rows.append((pid, "-", "-", "-", f"not assessed: {exc}"))
                continue
            risks = ", ".join(r.id for r in result.risk_factors) or "-"
            rows.append(
                (
                    pid,
                    str(imported.record["age_years"]),
                    risks,
                    result.deficiency_status,
                    result.urgency,
                )
            )
    if out is not None:
        for entry in report["patients"]:
            entry.pop("record")
        _write_atomic(out / REPORT, json.dumps(report, indent=2) + "\n")

    counts = ", ".join(f"{n} {t}" for t, n in sorted(export.counts.items()))
    err.print(f"Read {len(export.files)} files: {counts}.")
    err.print(
        f"Built {len(report['patients'])} patient records as of {as_of}; "
        f"skipped {len(report['skipped'])}."
    )
    for skipped in report["skipped"]:
        err.print(f"  skipped {skipped['patient']}: {skipped['reason']}")
    for problem in export.problems:
        err.print(f"  {problem.where}: {problem.message}")
    if out is not None:
        err.print(f"Records and import-report.json written to {out}.")
    if with_assessment and rows:
        table = Table(title=f"Assessed as of {as_of}")
        for col in ("patient", "age", "risk factors", "status", "urgency"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        show(err, table, "patient")  # a FHIR id cut short cannot be looked up


def _safe(pid: str) -> str:
    # A FHIR id is [A-Za-z0-9-.]{1,64}; anything else must not reach the file system.
    return "".join(c if c.isalnum() or c in "-." else "_" for c in pid).lstrip(".") or "patient"
