"""Expected recovery milestones, dated from the first dose of the course
(clinical-reference §7)."""

from __future__ import annotations

import datetime as dt

from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabSummary
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Explained, Milestone


def milestones(
    kb: Knowledge, f: Findings, labs: LabSummary, start: dt.date | None
) -> tuple[list[Milestone], Explained | None]:
    if start is None:
        return [], None
    anaemia = labs.band("hemoglobin") == "low" or labs.band("mcv") == "high"
    out: list[Milestone] = []
    for m in kb.recovery.milestones:
        applies = (
            m.applies == "always"
            or (m.applies == "neurological" and f.neurological)
            or (m.applies == "anaemia" and anaemia)
        )
        if not applies:
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
            )
        )
    outcome = None
    if f.neurological:
        o = kb.recovery.outcome
        outcome = explained(kb, Explained, "recovery.outcome", text=o.text, sources=o.sources)
    return out, outcome
