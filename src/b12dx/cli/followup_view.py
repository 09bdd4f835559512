"""What the follow-up commands print: a stored patient, their history and the due list as
JSON objects (the shapes ``--json`` promises) and as tables for a person at a terminal.
Nothing here decides anything clinical: the assessment is the engine's, the due list
the store's."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from b12dx.cli.io import show
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Assessment
from b12dx.store.due import DueItem
from b12dx.store.history import age_years
from b12dx.store.tables import (
    AssessmentSnapshot,
    AuditEntry,
    DoseEntry,
    Patient,
    PlannedDose,
)

URGENCY_STYLE = {
    "emergency": "bold white on red",
    "urgent": "bold red",
    "soon": "bold yellow",
    "routine": "cyan",
    "self_care": "green",
}
AUDIT_SHOWN = 20  # the latest entries in the text view; --json has them all


def stamp(value: dt.datetime) -> str:
    """A stored time in UTC (SQLite hands it back without its zone)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds")


def _age(p: Patient, as_of: dt.date) -> float | int:
    years = age_years(p.birth_date, as_of)
    return int(years) if years >= 2 else years


def _day(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


# -- JSON ------------------------------------------------------------------------------


def patient_row(p: Patient, last: AssessmentSnapshot | None, today: dt.date) -> dict[str, Any]:
    """One line of ``patient list``."""
    return {
        "id": p.id,
        "name": p.name,
        "birth_date": p.birth_date.isoformat(),
        "age_years": _age(p, today),
        "sex": p.sex,
        "last_assessment": None
        if last is None
        else {
            "id": last.id,
            "as_of": last.as_of.isoformat(),
            "urgency": last.urgency,
            "deficiency_status": last.deficiency_status,
        },
    }


def patient_json(p: Patient, as_of: dt.date) -> dict[str, Any]:
    """Everything recorded about the person (never the calendar feed's secret token)."""
    return {
        "id": p.id,
        "name": p.name,
        "birth_date": p.birth_date.isoformat(),
        "age_years": _age(p, as_of),
        "sex": p.sex,
        "diet": p.diet,
        "ethnicity": p.ethnicity,
        "pregnant": p.pregnant,
        "breastfeeding": p.breastfeeding,
        "profile": p.profile,
        "created_at": stamp(p.created_at),
        "conditions": [
            {"id": c.condition_id, "egfr": c.egfr, "recorded_on": _day(c.recorded_on)}
            for c in p.conditions
        ],
        "medications": [
            {"id": m.medication_id, "since": _day(m.started_on), "stopped": _day(m.stopped_on)}
            for m in p.medications
        ],
        "exposures": [{"id": e.exposure_id, "ongoing": e.ongoing} for e in p.exposures],
        "labs": [
            {
                "test": lab.test,
                "value": lab.value_number if lab.value_number is not None else lab.value_text,
                "unit": lab.unit,
                "date": lab.taken_on.isoformat(),
                "reference_low": lab.reference_low,
                "reference_high": lab.reference_high,
                "recorded_at": stamp(lab.recorded_at),
                "recorded_by": lab.recorded_by,
            }
            for lab in p.labs
        ],
        "symptom_ratings": [
            {
                "symptom": r.symptom_id,
                "rating": r.rating,
                "date": r.rated_on.isoformat(),
                "recorded_at": stamp(r.recorded_at),
                "recorded_by": r.recorded_by,
            }
            for r in p.ratings
        ],
        "doses": [
            {
                "date": d.given_on.isoformat(),
                "drug": d.drug,
                "dose_mg": d.dose_mg,
                "route": d.route,
                "given_by": d.given_by,
                "recorded_at": stamp(d.recorded_at),
                "recorded_by": d.recorded_by,
            }
            for d in p.doses
        ],
    }


def snapshot_json(s: AssessmentSnapshot, planned: Sequence[PlannedDose]) -> dict[str, Any]:
    return {
        "id": s.id,
        "created_at": stamp(s.created_at),
        "created_by": s.created_by,
        "as_of": s.as_of.isoformat(),
        "profile": s.profile,
        "engine_version": s.engine_version,
        "knowledge_version": s.knowledge_version,
        "urgency": s.urgency,
        "deficiency_status": s.deficiency_status,
        "planned_doses": [
            {"date": d.due_on.isoformat(), "dose": d.dose, "phase": d.phase} for d in planned
        ],
    }


def audit_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "at": stamp(e.at),
        "actor": e.actor,
        "action": e.action,
        "entity": e.entity,
        "entity_id": e.entity_id,
        "detail": e.detail,
    }


# -- text ------------------------------------------------------------------------------


def render_list(console: Console, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("No patients yet: add one with `b12dx patient add`.")
        return
    table = Table(title=f"{len(rows)} patients", title_justify="left")
    for col in ("ID", "Name", "Born", "Age", "Sex", "Last assessed", "Urgency", "Status"):
        table.add_column(col)
    for r in rows:
        last = r["last_assessment"] or {}
        urgency = last.get("urgency", "")
        table.add_row(
            r["id"],
            r["name"],
            r["birth_date"],
            str(r["age_years"]),
            r["sex"],
            last.get("as_of", "not yet"),
            f"[{URGENCY_STYLE[urgency]}]{urgency}[/]" if urgency else "",
            last.get("deficiency_status", "").replace("_", " "),
        )
    show(console, table, "ID", "Born")


def _runs(doses: Sequence[DoseEntry]) -> list[tuple[DoseEntry, DoseEntry, int, str]]:
    """Consecutive doses of the same drug, dose and route at a steady interval: (first,
    last, count, interval)."""
    runs: list[tuple[DoseEntry, DoseEntry, int, str]] = []
    i = 0
    while i < len(doses):
        first, j = doses[i], i
        same = (first.drug, first.dose_mg, first.route)
        step = None
        while (
            j + 1 < len(doses)
            and (doses[j + 1].drug, doses[j + 1].dose_mg, doses[j + 1].route) == same
        ):
            gap = (doses[j + 1].given_on - doses[j].given_on).days
            if step is not None and gap != step:
                break
            step = gap
            j += 1
        count = j - i + 1
        runs.append((first, doses[j], count, "once" if step is None else f"every {step} days"))
        i = j + 1
    return runs


def render_patient(
    console: Console,
    kb: Knowledge,
    data: dict[str, Any],
    snapshots: list[dict[str, Any]],
    trail: list[dict[str, Any]],
    doses: Sequence[DoseEntry],
) -> None:
    p = data
    lines = [
        f"Born {p['birth_date']} ({p['age_years']} years), {p['sex']}; diet {p['diet']}"
        + (
            "; family background " + p["ethnicity"].replace("_", " ")
            if p["ethnicity"] != "unknown"
            else ""
        ),
    ]
    flags = [f for f in ("pregnant", "breastfeeding") if p[f]]
    if flags:
        lines.append(", ".join(flags).capitalize())
    if p["profile"]:
        lines.append(f"Guideline profile: {p['profile']}")
    for c in p["conditions"]:
        egfr = f", eGFR {c['egfr']:g}" if c["egfr"] is not None else ""
        lines.append(
            f"Condition: {kb.conditions[c['id']].name}{egfr} (recorded {c['recorded_on']})"
        )
    for m in p["medications"]:
        span = f"since {m['since']}" if m["since"] else "start not known"
        span += f", stopped {m['stopped']}" if m["stopped"] else ""
        lines.append(f"Medicine: {kb.medications[m['id']].name} ({span})")
    for e in p["exposures"]:
        state = {True: "ongoing", False: "ended", None: ""}[e["ongoing"]]
        lines.append(f"Exposure: {kb.exposures[e['id']].name}" + (f" ({state})" if state else ""))
    console.print(Panel("\n".join(lines), title=f"{p['name']} · {p['id']}", title_align="left"))

    if p["labs"]:
        labs = Table(title="Lab results", title_justify="left")
        for col in ("Date", "Test", "Result", "Lab's range"):
            labs.add_column(col)
        for lab in p["labs"]:
            low, high = lab["reference_low"], lab["reference_high"]
            rng = f"{low if low is not None else ''}-{high if high is not None else ''}"
            labs.add_row(
                lab["date"],
                kb.labs[lab["test"]].name,
                f"{lab['value']:g} {lab['unit'] or ''}".strip()
                if isinstance(lab["value"], float)
                else str(lab["value"]),
                rng if rng != "-" else "",
            )
        show(console, labs, "Date")

    if p["symptom_ratings"]:
        by_symptom: dict[str, list[str]] = {}
        for r in p["symptom_ratings"]:
            by_symptom.setdefault(r["symptom"], []).append(f"{r['rating']} ({r['date']})")
        ratings = Table(title="Symptom ratings over time", title_justify="left")
        ratings.add_column("Symptom")
        ratings.add_column("Ratings, oldest first")
        for sid, seq in by_symptom.items():
            ratings.add_row(kb.symptoms[sid].name, " → ".join(seq))
        show(console, ratings)

    if doses:
        given = Table(title=f"B12 given ({len(doses)} doses)", title_justify="left")
        for col in ("From", "To", "Doses", "How often", "What", "Given by"):
            given.add_column(col)
        for first, last, count, interval in _runs(doses):
            givers = sorted(
                {d.given_by for d in doses if first.given_on <= d.given_on <= last.given_on}
            )
            given.add_row(
                str(first.given_on),
                str(last.given_on),
                str(count),
                interval,
                f"{first.drug} {first.dose_mg:g} mg {first.route.upper()}",
                ", ".join(givers),
            )
        show(console, given, "From", "To")

    if snapshots:
        hist = Table(title="Assessments kept", title_justify="left")
        for col in ("#", "Made", "As of", "Urgency", "Status", "Engine / knowledge", "Planned"):
            hist.add_column(col)
        for s in snapshots:
            hist.add_row(
                str(s["id"]),
                f"{s['created_at'][:10]} {s['created_by']}",
                s["as_of"],
                s["urgency"],
                s["deficiency_status"].replace("_", " "),
                f"{s['engine_version']} / {s['knowledge_version']} ({s['profile']})",
                f"{len(s['planned_doses'])} doses",
            )
        show(console, hist, "#", "As of")

    if trail:
        shown = trail[-AUDIT_SHOWN:]
        title = "Audit trail" + (
            f" (latest {len(shown)} of {len(trail)}; --json has all)"
            if len(shown) < len(trail)
            else ""
        )
        table = Table(title=title, title_justify="left")
        for col in ("When (UTC)", "Who", "What", "Detail"):
            table.add_column(col)
        for e in shown:
            detail = json.dumps(e["detail"], separators=(", ", ": "))
            table.add_row(
                e["at"][:16].replace("T", " "),
                e["actor"],
                f"{e['action']} {e['entity'].replace('_', ' ')}",
                detail if len(detail) <= 70 else detail[:67] + "...",
            )
        show(console, table)


def next_dose(a: Assessment, last_given: dt.date) -> str:
    """When the next dose is due, by the engine's assessment made after recording one."""
    t = a.treatment
    if t is None:
        return "No further dose is planned: the current assessment does not indicate treatment."
    if t.overdue_since is not None:
        phase = (t.overdue_phase or "maintenance").capitalize()
        return f"{phase} is overdue: the dose was due {t.overdue_since}."
    upcoming = [d for d in t.schedule if d.date > last_given and d.date >= a.as_of]
    if not upcoming:
        return "No further dose is planned in the schedule's 12 months."
    d = upcoming[0]
    return f"Next dose due {d.date}: {t.drug} {d.dose} {t.route.upper()} ({d.phase})."


def render_due(console: Console, items: Iterable[DueItem], as_of: dt.date, until: dt.date) -> None:
    items = list(items)
    if not items:
        console.print(f"Nothing due from {as_of} to {until}.")
        return
    overdue = [i for i in items if i.overdue]
    rest = [i for i in items if not i.overdue]
    for title, group, style in (
        (f"Overdue as of {as_of}", overdue, "bold red"),
        (f"Due from {as_of} to {until}", rest, "bold"),
    ):
        if not group:
            continue
        table = Table(title=f"[{style}]{title}[/] ({len(group)})", title_justify="left")
        for col in ("Date", "ID", "Patient", "What", "Urgency"):
            table.add_column(col)
        for i in group:
            table.add_row(
                i.date.isoformat(),
                i.patient_id,
                i.patient_name,
                i.text,
                f"[{URGENCY_STYLE[i.urgency]}]{i.urgency}[/]",
            )
        show(console, table, "Date", "ID")
