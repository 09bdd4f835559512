"""Expected recovery milestones, dated from the first dose of the course
(clinical-reference §7), and each milestone judged from the symptom ratings that track it
(recovery.yaml ``tracked_by``)."""

from __future__ import annotations

import datetime as dt

from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings, rank
from b12dx.engine.labs import LabSummary
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import (
    Explained,
    Milestone,
    ProgressStatus,
    RecoveryProgress,
    SymptomProgress,
)
from b12dx.models.knowledge import MilestoneDef

_STATUS_TEXT: dict[str, str] = {
    "pending": "not due yet",
    "improved": "improved as expected",
    "not_improved": "not improved by the expected date",
    "not_rated": "due, but not rated on or after the expected date",
}


def milestones(
    kb: Knowledge, f: Findings, labs: LabSummary, start: dt.date | None
) -> tuple[list[Milestone], Explained | None]:
    if start is None:
        return [], None
    anaemia = labs.band("hemoglobin") == "low" or labs.band("mcv") == "high"
    # Rule recovery.follows_findings: a milestone is promised for the findings the person
    # has (motor recovery to someone with weakness); with none on record (a course known
    # only from its doses) each neurological milestone stands.
    groups = {kb.symptoms[s].group for s in [*f.neuro_symptoms, *f.course_neuro_symptoms]}
    out: list[Milestone] = []
    for m in kb.recovery.milestones:
        applies = (
            m.applies == "always"
            or (m.applies == "neurological" and f.neurological_course)
            or (m.applies == "anaemia" and anaemia)
        )
        if not applies or (m.groups and groups and not groups & set(m.groups)):
            continue
        due = start + dt.timedelta(days=m.days)
        out.append(
            explained(
                kb,
                Milestone,
                "recovery.milestone",
                text=m.text,
                sources=m.sources,
                id=m.id,
                name=m.name,
                expected_by=due,
                open_ended=m.open_ended,
            )
        )
    outcome = None
    if f.neurological_course:
        o = kb.recovery.outcome
        outcome = explained(kb, Explained, "recovery.outcome", text=o.text, sources=o.sources)
    return out, outcome


def _tracked(kb: Knowledge, m: MilestoneDef) -> list[str]:
    out: list[str] = []
    for sid in m.tracked_by:
        out += (
            [s for s in kb.symptoms if s in kb.neurological_symptoms]
            if sid == "@neurological"
            else [sid]
        )
    return list(dict.fromkeys(out))


def _symptom(kb: Knowledge, f: Findings, sid: str, due: dt.date) -> SymptomProgress:
    """Rule recovery.progress for one symptom: its latest rating after the baseline, judged
    against the baseline when it was made on or after the milestone's date."""
    base = f.baselines[sid]
    later = [r for r in f.ratings[sid] if r.date > base.date]
    latest = later[-1] if later else None
    status: ProgressStatus
    if due > f.as_of:
        status = "pending"
    elif latest is None or latest.date < due:
        status = "not_rated"
    elif rank(latest.rating) < rank(base.rating):
        status = "improved"
    else:
        status = "not_improved"
    return SymptomProgress(
        id=sid,
        name=kb.symptoms[sid].name,
        baseline_rating=base.rating,
        baseline_date=base.date,
        latest_rating=latest.rating if latest else None,
        latest_date=latest.date if latest else None,
        status=status,
    )


def _combine(
    m: MilestoneDef, due: dt.date, f: Findings, parts: list[SymptomProgress]
) -> ProgressStatus:
    """all: one symptom not improved decides not_improved, and improved needs every one;
    any: one improved decides improved, and not_improved needs every one rated. Otherwise
    the milestone waits for ratings (not_rated)."""
    if due > f.as_of:
        return "pending"
    states = {p.status for p in parts}
    decisive: ProgressStatus = "not_improved" if m.improved_when == "all" else "improved"
    complete: ProgressStatus = "improved" if m.improved_when == "all" else "not_improved"
    if decisive in states:
        return decisive
    if states == {complete}:
        return complete
    return "not_rated"


def _describe(p: SymptomProgress) -> str:
    start = f"{p.name.lower()} {p.baseline_rating} on {p.baseline_date}"
    if p.latest_rating is None or p.latest_date is None:
        return f"{start}, not rated since"
    return f"{start}, {p.latest_rating} on {p.latest_date}"


def progress(kb: Knowledge, f: Findings, milestones: list[Milestone]) -> list[RecoveryProgress]:
    """Each dated milestone that symptom ratings can show, for the symptoms present (rated
    above none) at the start of the course."""
    if not f.doses:
        return []
    defs = {m.id: m for m in kb.recovery.milestones}
    out: list[RecoveryProgress] = []
    for dated in milestones:
        m = defs[dated.id]
        counted = [
            sid
            for sid in _tracked(kb, m)
            if sid in f.baselines and rank(f.baselines[sid].rating) > 0
        ]
        if not counted:
            continue
        parts = [_symptom(kb, f, sid, dated.expected_by) for sid in counted]
        status = _combine(m, dated.expected_by, f, parts)
        text = (
            f"{m.name}, expected by {dated.expected_by}: {_STATUS_TEXT[status]} "
            f"({'; '.join(_describe(p) for p in parts)})."
        )
        out.append(
            explained(
                kb,
                RecoveryProgress,
                "recovery.progress",
                text=text,
                sources=m.sources,
                id=m.id,
                name=m.name,
                expected_by=dated.expected_by,
                status=status,
                symptoms=parts,
            )
        )
    return out
