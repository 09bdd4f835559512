"""``assess``: a patient record in, an explained assessment out. Pure: no clock, no I/O;
the same record, profile and date always give the same assessment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from b12dx.engine import diet, differentials, next_steps, recovery, status, suspicion
from b12dx.engine import treatment as treatment_rules
from b12dx.engine import triage as triage_rules
from b12dx.engine import urgency as urgency_rules
from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings, factor_name, find
from b12dx.engine.labs import interpret_labs
from b12dx.engine.validate import check_patient, parse_patient, resolve_as_of
from b12dx.engine.warnings import notes, raise_warnings
from b12dx.knowledge.loader import Knowledge, load_knowledge
from b12dx.models.assessment import (
    Assessment,
    Citation,
    RedFlagItem,
    RiskFactorItem,
    Triage,
    TriageAlarm,
)
from b12dx.models.patient import PatientRecord
from b12dx.version import ENGINE_VERSION, SCHEMA_VERSION

DISCLAIMER = (
    "b12dx supports and does not replace a clinician's judgement. It does not diagnose; "
    "anyone worried about their symptoms should see a doctor."
)


def _cited(pieces: Iterable[Any]) -> list[str]:
    """Every source id cited by the items, in first-seen order."""
    seen: dict[str, None] = {}
    for piece in pieces:
        for item in piece if isinstance(piece, list) else (piece,):
            if item is not None:
                seen.update(dict.fromkeys(item.sources))
    return list(seen)


def symptoms_since(f: Findings) -> dt.date | None:
    """The earliest onset of the B12 symptoms present (from their durations), when known."""
    weeks = [f.symptoms[x].duration_weeks for x in f.b12_symptoms]
    known = [float(w) for w in weeks if w is not None]
    if not known:
        return None
    return f.as_of - dt.timedelta(days=round(max(known) * 7))


# Clinicians read the evidence first: guidelines, then labels, references and studies,
# b12dx's own rules, and last the consumer articles cited for the patients' wording.
CITED_FIRST = {
    k: i for i, k in enumerate(("guideline", "label", "reference", "study", "project", "seed"))
}


def _citation(kb: Knowledge, sid: str) -> Citation:
    key = ("citation", sid)
    if key not in kb.derived:
        src = kb.sources[sid]
        url = src.url or (f"https://pubmed.ncbi.nlm.nih.gov/{src.pmid}/" if src.pmid else None)
        kb.derived[key] = Citation(id=sid, title=src.title, url=url, year=src.year, kind=src.kind)
    citation: Citation = kb.derived[key]
    return citation


def assess(
    patient: PatientRecord | Mapping[str, Any],
    profile: str | None = None,
    as_of: dt.date | None = None,
    knowledge: Knowledge | None = None,
) -> Assessment:
    """Assess one person for vitamin B12 deficiency with neurological involvement.

    ``patient`` is a ``PatientRecord`` or the contract's JSON as a mapping; ``as_of`` (or the
    record's own ``as_of``) is required; ``profile`` defaults to ``nice-ng239``. Raises
    ``InputError`` (field path and what is accepted) or ``ProfileError``.
    """
    kb = knowledge or load_knowledge()
    prof = kb.profile(profile)
    record = parse_patient(patient)
    day = resolve_as_of(record, as_of)
    check_patient(record, kb, day)

    f = find(kb, record, day)
    labs = interpret_labs(
        kb, prof, record, f.first_dose, symptoms_since(f), day, symptomatic=bool(f.b12_symptoms)
    )
    s = suspicion.judge(kb, f, labs)
    given = treatment_rules.presentation(kb, prof, f, labs)
    st = status.decide(kb, prof, f, labs, s, given.course)
    t = treatment_rules.decide(kb, prof, f, labs, st, s, given)
    level, urgency_reasons = urgency_rules.decide(kb, f, labs, s, st, t)
    dx = differentials.weigh(kb, f, labs)
    steps = next_steps.plan(kb, f, labs, s, st, t, dx)
    warnings = raise_warnings(kb, prof, f, labs, s, st, t, steps)
    milestones, outcome = recovery.milestones(
        kb, f, labs, t.treatment.start if t.treatment else None
    )
    progress = recovery.progress(kb, f, milestones)
    extra_notes = notes(kb, f, labs, s, st, progress)
    risk_items = [
        explained(
            kb,
            RiskFactorItem,
            "risk.factor",
            text=m.factor.text + (f" ({m.qualifier})" if m.qualifier else ""),
            sources=m.factor.sources,
            id=m.factor.id,
            name=factor_name(kb, m.factor, f.medications),
            category=m.factor.category,
            qualifier=m.qualifier or None,
        )
        for m in f.risk_factors
    ]
    red_items = [
        explained(kb, RedFlagItem, r.rule, text=r.name, sources=r.sources, id=r.id, name=r.name)
        for r in f.red_flags
    ]
    alarm_items = [
        explained(
            kb,
            TriageAlarm,
            a.rule,
            sources=a.sources,
            id=a.id,
            level=a.level,
            name=a.name,
            symptoms=list(a.symptoms),
            elsewhere=a.elsewhere.plain if a.elsewhere is not None else None,
        )
        for a in f.alarms
    ]
    triaged = Triage(
        age_group=kb.triage.age_group(record.age_years).id,
        tempo={sid: triage_rules.tempo(kb, e) for sid, e in f.symptoms.items()},
        alarms=alarm_items,
        enough_to_assess=bool(
            f.symptoms or f.risk_factors or labs.usable or f.doses or f.conditions
        ),
    )
    path = status.pathway(kb, st, f, labs, given.course)
    ordered = {x.id for x in steps}
    # No supplement before a blood test: one is asked for, or there is no B12 result and
    # no treatment yet (an emergency or a referral elsewhere orders none itself).
    untested = not f.doses and not ({"total_b12", "active_b12"} & labs.usable.keys())
    advice = diet.advise(kb, prof, f, labs, bool(ordered & next_steps.B12_TESTS) or untested)
    pieces: list[Any] = [
        s.reasons,
        risk_items,
        red_items,
        alarm_items,
        labs.items,
        st.reasons,
        urgency_reasons,
        [path],
        steps,
        warnings,
        extra_notes,
        t.treatment,
        milestones,
        outcome,
        progress,
        dx,
        [advice],
    ]
    return Assessment(
        schema_version=SCHEMA_VERSION,
        engine_version=ENGINE_VERSION,
        knowledge_version=kb.version,
        profile=prof.id,
        as_of=day,
        testing_recommended=s.testing,
        suspicion={"level": s.level, "reasons": s.reasons},
        risk_factors=risk_items,
        neurological_involvement=f.neurological,
        labs=labs.items,
        deficiency_status=st.status,
        status_reasons=st.reasons,
        urgency=level,
        urgency_reasons=urgency_reasons,
        red_flags=red_items,
        triage=triaged,
        diagnostic_pathway=path,
        next_steps=steps,
        warnings=warnings,
        notes=extra_notes,
        treatment=t.treatment,
        recovery_milestones=milestones,
        recovery_outcome=outcome,
        recovery_progress=progress,
        differentials=dx,
        diet=advice,
        citations=sorted(
            (_citation(kb, sid) for sid in _cited(pieces)),
            key=lambda c: CITED_FIRST.get(c.kind or "", len(CITED_FIRST)),
        ),
        disclaimer=DISCLAIMER,
    )
