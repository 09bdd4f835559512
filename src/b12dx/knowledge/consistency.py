"""Whether the knowledge base hangs together: every source id known and every source
cited, ids unique, every code's check digit right, every symptom, condition, medicine,
regimen and place a rule names present. ``load_knowledge_from`` refuses a knowledge base
with any problem, so a broken one never reaches the engine."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from b12dx.knowledge.check_digits import loinc_problem, snomed_problem
from b12dx.models.knowledge import Code

if TYPE_CHECKING:
    from b12dx.knowledge.loader import Knowledge


def cited_source_ids(obj: object) -> Iterator[str]:
    """Every source id cited anywhere inside a model, list or dict."""
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if name in ("sources", "review_sources") and isinstance(value, list):
                yield from value
            elif name == "source" and isinstance(value, str):
                yield value
            else:
                yield from cited_source_ids(value)
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from cited_source_ids(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from cited_source_ids(value)


def all_codes(obj: object, where: str = "") -> Iterator[tuple[str, Code]]:
    """Every code anywhere inside a model, list or dict, with where it sits."""
    if isinstance(obj, Code):
        yield where, obj
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from all_codes(getattr(obj, name), f"{where}.{name}" if where else name)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from all_codes(value, f"{where}.{key}" if where else str(key))
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            yield from all_codes(value, f"{where}[{i}]")


def knowledge_codes(kb: Knowledge) -> Iterator[tuple[str, Code]]:
    """Every code of the knowledge base, named by topic and entry."""
    for topic, entries in kb.topics().items():
        yield from all_codes(entries, topic)
    for name in ("fhir", "cds", "screening"):
        yield from all_codes(getattr(kb, name), name)


def _code_problems(kb: Knowledge) -> Iterator[str]:
    # A code with a check digit that does not check cannot be in any release: it would
    # go out to health records (in orders, in prefetch queries) and match nothing.
    for where, code in knowledge_codes(kb):
        problem = None
        if code.system == "SNOMED CT":
            problem = snomed_problem(code.code)
        elif code.system == "LOINC":
            problem = loinc_problem(code.code)
        if problem:
            yield f"{where}: {code.system} {code.code}: {problem}"
        if code.verified and not code.verified_by:
            yield f"{where}: {code.system} {code.code} is verified but names no verified_by"
        for cid in code.also:
            if cid not in kb.conditions:
                yield f"{where}: {code.system} {code.code} also names unknown condition {cid!r}"


def _feature_problems(kb: Knowledge, where: str, feature: str) -> Iterator[str]:
    kind, _, value = feature.partition(":")
    known: dict[str, Mapping[str, object]] = {
        "symptom": kb.symptoms,
        "group": kb.symptom_groups,
        "condition": kb.conditions,
        "medication": kb.medications,
        "exposure": kb.exposures,
    }
    if kind in known:
        if value not in known[kind]:
            yield f"{where}: unknown {kind} {value!r}"
    elif kind == "onset":
        if value not in ("sudden", "gradual"):
            yield f"{where}: unknown onset {value!r}"
    elif kind == "course":
        if value != "progressing":
            yield f"{where}: unknown course {value!r}"
    elif kind == "age_min":
        try:
            float(value)
        except ValueError:
            yield f"{where}: age_min needs a number, not {value!r}"
    elif kind == "lab":
        test, _, _band = value.partition("=")
        if test not in kb.labs:
            yield f"{where}: unknown lab test {test!r}"
    else:
        yield f"{where}: unknown feature kind {kind!r}"


def _symptom_refs(kb: Knowledge, ids: list[str]) -> Iterator[str]:
    for sid in ids:
        if sid not in ("@weakness", "@deficit") and sid not in kb.symptoms:
            yield sid


def check(kb: Knowledge) -> Iterator[str]:
    """Every inconsistency in the knowledge base, as readable lines (none when sound)."""
    topics = kb.topics()
    cited: set[str] = set()
    for topic, entries in topics.items():
        if topic == "sources":
            continue
        for key, entry in entries.items():
            ids = list(cited_source_ids(entry))
            cited.update(ids)
            for sid in ids:
                if sid not in kb.sources:
                    yield f"{topic}.{key}: unknown source id {sid!r}"
    extras = (
        kb.recovery.outcome,
        kb.recovery.baseline,
        kb.diet.notes,
        kb.diet.rda,
        kb.diet.uk_rni,
        kb.fhir,
        kb.cds,
        kb.screening,
        kb.courses,
        kb.triage,
    )
    for extra in extras:
        ids = list(cited_source_ids(extra))
        cited.update(ids)
        for sid in ids:
            if sid not in kb.sources:
                yield f"{type(extra).__name__}: unknown source id {sid!r}"
    for sid in kb.sources:
        if sid not in cited:
            yield f"sources.{sid}: cited by nothing"

    for entry in [*kb.conditions.values(), *kb.exposures.values()]:
        for sid in entry.presents_as:
            if sid not in kb.symptoms:
                yield f"conditions.{entry.id}: presents_as names unknown symptom {sid!r}"
    places = {e.id for e in kb.triage.elsewhere}
    for e in kb.triage.elsewhere:
        if e.young is not None and e.young not in places:
            yield f"triage.elsewhere.{e.id}: unknown young entry {e.young!r}"
    for s in kb.symptoms.values():
        if s.group not in kb.symptom_groups:
            yield f"symptoms.{s.id}: unknown group {s.group!r}"
        for place in (
            s.elsewhere,
            s.elsewhere_in_pregnancy,
            *(w.elsewhere for w in s.when_new_by_age),
        ):
            if place is not None and place not in places:
                yield f"symptoms.{s.id}: unknown triage.yaml elsewhere entry {place!r}"
    groups = [g.id for g in kb.triage.age_groups]
    if kb.triage.age_groups[-1].below is not None or len(set(groups)) != len(groups):
        yield "triage.age_groups: each group once, the last with no upper bound"
    for q in kb.red_flag_questions.values():
        if q.symptom not in kb.symptoms:
            yield f"red_flag_questions.{q.id}: unknown symptom {q.symptom!r}"
    for rf in kb.risk_factors.values():
        t = rf.trigger
        refs: list[tuple[str, list[str] | None, Mapping[str, object]]] = [
            ("condition", t.condition, kb.conditions),
            ("medication", t.medication, kb.medications),
            ("exposure", t.exposure, kb.exposures),
        ]
        for kind, wanted, table in refs:
            for i in wanted or []:
                if i not in table:
                    yield f"risk_factors.{rf.id}: unknown {kind} {i!r}"
    for rf_id, flag in kb.red_flags.items():
        m = flag.match
        for sid in _symptom_refs(kb, [*m.any, *m.with_any]):
            yield f"red_flags.{rf_id}: unknown symptom {sid!r}"
    for milestone in kb.recovery.milestones:
        for sid in milestone.tracked_by:
            if sid != "@neurological" and sid not in kb.symptoms:
                yield f"recovery.{milestone.id}: tracked_by names unknown symptom {sid!r}"
    for d in kb.differentials.values():
        for feature in [
            *d.supports,
            *d.against,
            *d.good_requires_any,
            *d.requires_any,
            *d.ruled_out_by,
        ]:
            yield from _feature_problems(kb, f"differentials.{d.id}", feature)
        for g in d.age_groups:
            if g not in {a.id for a in kb.triage.age_groups}:
                yield f"differentials.{d.id}: unknown age group {g!r}"
    for p in kb.profiles.values():
        for cause, regimen in [*p.regimen_by_cause.items(), *p.contraindication_fallback.items()]:
            if regimen not in kb.regimens:
                yield f"profiles.{p.id}: {cause} names unknown regimen {regimen!r}"
        for key, regimens in p.adequate_regimens.items():
            if key not in p.regimen_by_cause:
                yield f"profiles.{p.id}: adequate_regimens for unknown cause {key!r}"
            for regimen in regimens:
                if regimen not in kb.regimens:
                    yield f"profiles.{p.id}: adequate {key} names unknown regimen {regimen!r}"
        if p.regimen_by_cause and set(p.adequate_regimens) != set(p.regimen_by_cause):
            yield f"profiles.{p.id}: adequate_regimens must list every cause of regimen_by_cause"
        for test in p.bands:
            if test not in kb.labs:
                yield f"profiles.{p.id}: bands for unknown test {test!r}"
        # The renal caveat (engine/status.py) is the eGFR band "low": every eGFR rule names
        # it, and the last applies to everyone, so that one always matches.
        egfr = p.bands.get("egfr", [])
        if (
            not egfr
            or egfr[-1].when.model_dump(exclude_none=True)
            or not all(any(c.band == "low" for c in r.cutoffs) for r in egfr)
        ):
            yield f"profiles.{p.id}: eGFR bands need a 'low' band, the last rule for everyone"
        for required in (
            "review_after_months",
            "review_after_months_pregnancy",
            "loading_grace_days",
        ):
            if getattr(p, required) is None:
                yield f"profiles.{p.id}: {required} is missing"
    for r in kb.regimens.values():
        for c in r.contraindicated_conditions:
            if c not in kb.conditions:
                yield f"regimens.{r.id}: unknown condition {c!r}"
    yield from _fhir_problems(kb)
    yield from _code_problems(kb)
    yield from _screening_problems(kb)
    for p in kb.profiles.values():
        if p.region not in kb.care_access:
            yield f"profiles.{p.id}: region {p.region!r} has no entry in care_access.yaml"
    for region in kb.care_access.values():
        for urgency in kb.urgency:
            if urgency not in region.where:
                yield f"care_access.{region.id}: no 'where' for urgency {urgency!r}"
    defaults = [p.id for p in kb.profiles.values() if p.default]
    if len(defaults) != 1:
        yield f"profiles: exactly one default profile needed, found {defaults}"


def _fhir_problems(kb: Knowledge) -> Iterator[str]:
    for check_ in kb.cds.order_checks:
        for mid in check_.medications:
            if mid not in kb.medications:
                yield f"cds.order_checks.{check_.id}: unknown medication {mid!r}"
    for urgency in kb.urgency:
        if urgency not in kb.cds.indicator_by_urgency:
            yield f"cds.indicator_by_urgency: no indicator for urgency {urgency!r}"
    for cid in kb.fhir.lasting_conditions:
        if cid not in kb.conditions:
            yield f"fhir.lasting_conditions: unknown condition {cid!r}"
    known = {cs.name for cs in kb.fhir.code_systems}
    tables: list[tuple[str, Mapping[str, Any]]] = [
        ("symptoms", kb.symptoms),
        ("conditions", kb.conditions),
        ("medications", kb.medications),
        ("exposures", kb.exposures),
        ("labs", kb.labs),
    ]
    seen: dict[tuple[str, str], str] = {}
    for topic, table in tables:
        for key, entry in table.items():
            for code in entry.codes:
                if code.system not in known:
                    yield f"{topic}.{key}: code system {code.system!r} has no URI in fhir.yaml"
                other = seen.setdefault((code.system, code.code), f"{topic}.{key}")
                if other != f"{topic}.{key}":
                    yield f"{topic}.{key}: {code.system} {code.code} also maps {other}"


def _screening_problems(kb: Knowledge) -> Iterator[str]:
    sc = kb.screening
    follow_ups = [t for tests in sc.follow_up_tests.values() for t in tests]
    for test in [*sc.b12_tests, *sc.follow_up_tests, *follow_ups]:
        if test not in kb.labs:
            yield f"screening: unknown lab test {test!r}"
    for rf in sc.untested_at_risk.risk_factors:
        if rf not in kb.risk_factors:
            yield f"screening.untested_at_risk: unknown risk factor {rf!r}"
    for cid in sc.untested_at_risk.presenting_conditions:
        if cid not in kb.conditions:
            yield f"screening.untested_at_risk: unknown condition {cid!r}"
    for route in [*sc.maintenance.routes, *sc.route_words]:
        if route not in kb.fhir.routes:
            yield f"screening: route {route!r} is not in fhir.yaml routes"
    for route in sc.maintenance.routes:
        if route not in kb.courses.injection_routes:
            yield f"screening.maintenance: route {route!r} is not in courses.yaml injection_routes"
