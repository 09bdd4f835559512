"""Load the knowledge base files into typed models and check that they hang together.

Every file in ``data/`` holds one topic. Loading validates each entry against its model
(``b12dx.models.knowledge``) and then the references between files: every source id is
known, every source is cited, ids are unique, every symptom, condition, medicine and
regimen a rule names exists. A broken knowledge base never reaches the engine.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from b12dx.errors import KnowledgeError, ProfileError
from b12dx.knowledge.check_digits import loinc_problem, snomed_problem
from b12dx.models.adapter_knowledge import CdsKnowledge, FhirMapping, ScreeningKnowledge
from b12dx.models.knowledge import (
    AlgorithmStep,
    CareAccess,
    CheckTopic,
    Code,
    CodedEntry,
    Courses,
    Diet,
    Differential,
    Fact,
    LabTest,
    Medication,
    NextStepDef,
    Profile,
    Recovery,
    RedFlag,
    RedFlagQuestion,
    Regimen,
    RiskFactor,
    Rule,
    Source,
    Symptom,
    SymptomGroup,
    UrgencyDef,
    WarningDef,
)
from b12dx.models.triage import TriageKnowledge

DATA_DIR = Path(__file__).parent / "data"

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Knowledge:
    """The whole knowledge base, indexed by id. Immutable; share it freely."""

    version: str
    sources: dict[str, Source]
    symptom_groups: dict[str, SymptomGroup]
    symptoms: dict[str, Symptom]
    conditions: dict[str, CodedEntry]
    medications: dict[str, Medication]
    check_topics: dict[str, CheckTopic]
    exposures: dict[str, CodedEntry]
    risk_factors: dict[str, RiskFactor]
    labs: dict[str, LabTest]
    unit_spellings: dict[str, str]
    profiles: dict[str, Profile]
    regimens: dict[str, Regimen]
    recovery: Recovery
    differentials: dict[str, Differential]
    red_flags: dict[str, RedFlag]
    red_flag_questions: dict[str, RedFlagQuestion]
    diet: Diet
    warnings: dict[str, WarningDef]
    next_steps: dict[str, NextStepDef]
    urgency: dict[str, UrgencyDef]
    care_access: dict[str, CareAccess]
    algorithm: dict[str, AlgorithmStep]
    facts: dict[str, Fact]
    rules: dict[str, Rule]
    fhir: FhirMapping
    cds: CdsKnowledge
    screening: ScreeningKnowledge
    courses: Courses
    triage: TriageKnowledge
    weakness_symptoms: frozenset[str] = field(default=frozenset())
    # The B12 symptoms in a neurological group: any of them is neurological involvement.
    neurological_symptoms: frozenset[str] = field(default=frozenset())
    # Values the engine derives from the knowledge base alone (citations, food lists),
    # kept for reuse across assessments. Never patient data.
    derived: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def default_profile(self) -> Profile:
        return next(p for p in self.profiles.values() if p.default)

    def profile(self, profile_id: str | None) -> Profile:
        if profile_id is None:
            return self.default_profile
        try:
            return self.profiles[profile_id]
        except KeyError:
            raise ProfileError(
                f"unknown profile {profile_id!r} (accepted: {', '.join(self.profiles)})"
            ) from None

    def rule(self, rule_id: str) -> Rule:
        return self.rules[rule_id]

    def topics(self) -> dict[str, Mapping[str, BaseModel]]:
        """Each listable topic with its entries, for ``b12dx knowledge`` and ``explain``."""
        return {
            "symptoms": self.symptoms,
            "symptom_groups": self.symptom_groups,
            "risk_factors": self.risk_factors,
            "conditions": self.conditions,
            "medications": self.medications,
            "exposures": self.exposures,
            "labs": self.labs,
            "profiles": self.profiles,
            "regimens": self.regimens,
            "milestones": {m.id: m for m in self.recovery.milestones},
            "differentials": self.differentials,
            "red_flags": self.red_flags,
            "red_flag_questions": self.red_flag_questions,
            "foods": {f.id: f for f in self.diet.foods},
            "warnings": self.warnings,
            "next_steps": self.next_steps,
            "urgency": self.urgency,
            "care_access": self.care_access,
            "algorithm": self.algorithm,
            "facts": self.facts,
            "rules": self.rules,
            "sources": self.sources,
        }


def _read(directory: Path, name: str) -> Any:
    path = directory / f"{name}.yaml"
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.load(f, Loader=_Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path.name}: {exc}") from exc


def _entries(directory: Path, name: str, model: type[M]) -> dict[str, M]:
    raw = _read(directory, name)
    try:
        items = TypeAdapter(list[model]).validate_python(raw)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise KnowledgeError(f"{name}.yaml: {exc}") from exc
    out: dict[str, M] = {}
    for item in items:
        key = item.id  # type: ignore[attr-defined]
        if key in out:
            raise KnowledgeError(f"{name}.yaml: duplicate id {key!r}")
        out[key] = item
    return out


def _one(directory: Path, name: str, model: type[M]) -> M:
    try:
        return model.model_validate(_read(directory, name))
    except ValidationError as exc:
        raise KnowledgeError(f"{name}.yaml: {exc}") from exc


def _resolve_profiles(raw: dict[str, Profile]) -> dict[str, Profile]:
    """Apply ``inherits``: a child overrides whole keys (one test's bands, a regimen map)."""
    resolved: dict[str, Profile] = {}

    def resolve(pid: str, seen: tuple[str, ...] = ()) -> Profile:
        if pid in resolved:
            return resolved[pid]
        if pid in seen:
            raise KnowledgeError(f"profiles.yaml: inheritance loop through {pid!r}")
        profile = raw[pid]
        if profile.inherits:
            if profile.inherits not in raw:
                raise KnowledgeError(f"profiles.yaml: {pid} inherits unknown {profile.inherits!r}")
            parent = resolve(profile.inherits, (*seen, pid))
            merged = parent.model_dump()
            mine = profile.model_dump(exclude_unset=True)
            merged["bands"] = {**merged["bands"], **mine.get("bands", {})}
            for key, value in mine.items():
                if key != "bands":
                    merged[key] = value
            merged["default"] = profile.default
            merged["sources"] = list(dict.fromkeys([*profile.sources, *parent.sources]))
            profile = Profile.model_validate(merged)
        resolved[pid] = profile
        return profile

    for pid in raw:
        resolve(pid)
    return resolved


def load_knowledge_from(directory: Path) -> Knowledge:
    """Load and check the knowledge base in ``directory`` (a copy of ``data/`` in tests)."""
    meta = _read(directory, "meta")
    spellings = _read(directory, "unit_spellings")
    symptoms = _entries(directory, "symptoms", Symptom)
    groups = _entries(directory, "symptom_groups", SymptomGroup)
    kb = Knowledge(
        version=str(meta["knowledge_version"]),
        sources=_entries(directory, "sources", Source),
        symptom_groups=groups,
        symptoms=symptoms,
        conditions=_entries(directory, "conditions", CodedEntry),
        medications=_entries(directory, "medications", Medication),
        check_topics=_entries(directory, "check_topics", CheckTopic),
        exposures=_entries(directory, "exposures", CodedEntry),
        risk_factors=_entries(directory, "risk_factors", RiskFactor),
        labs=_entries(directory, "labs", LabTest),
        unit_spellings={str(k).lower(): str(v) for k, v in spellings.items()},
        profiles=_resolve_profiles(_entries(directory, "profiles", Profile)),
        regimens=_entries(directory, "regimens", Regimen),
        recovery=_one(directory, "recovery", Recovery),
        differentials=_entries(directory, "differentials", Differential),
        red_flags=_entries(directory, "red_flags", RedFlag),
        red_flag_questions=_entries(directory, "red_flag_questions", RedFlagQuestion),
        diet=_one(directory, "foods", Diet),
        warnings=_entries(directory, "warnings", WarningDef),
        next_steps=_entries(directory, "next_steps", NextStepDef),
        urgency=_entries(directory, "urgency", UrgencyDef),
        care_access=_entries(directory, "care_access", CareAccess),
        algorithm=_entries(directory, "algorithm", AlgorithmStep),
        facts=_entries(directory, "facts", Fact),
        rules=_entries(directory, "rules", Rule),
        fhir=_one(directory, "fhir", FhirMapping),
        cds=_one(directory, "cds", CdsKnowledge),
        screening=_one(directory, "screening", ScreeningKnowledge),
        courses=_one(directory, "courses", Courses),
        triage=_one(directory, "triage", TriageKnowledge),
        weakness_symptoms=frozenset(s.id for s in symptoms.values() if s.weakness),
        neurological_symptoms=frozenset(
            s.id
            for s in symptoms.values()
            if s.role == "b12" and s.group in groups and groups[s.group].neurological
        ),
    )
    problems = list(check(kb))
    if problems:
        raise KnowledgeError("knowledge base is inconsistent:\n  " + "\n  ".join(problems))
    return kb


def _cache_dir() -> Path:
    explicit = os.environ.get("B12DX_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "b12dx"


def _digest(directory: Path) -> str:
    """Changes whenever a data file, the loader or its models, b12dx or pydantic change."""
    import pydantic

    from b12dx.version import ENGINE_VERSION

    h = hashlib.sha256(f"{ENGINE_VERSION}|{pydantic.VERSION}".encode())
    # The pickled layout follows this module and the knowledge models, so they count too.
    models = Path(__file__).parent.parent / "models"
    code = [
        Path(__file__),
        *(models / f"{m}.py" for m in ("knowledge", "adapter_knowledge", "triage")),
    ]
    for path in [*code, *sorted(directory.glob("*.yaml"))]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:24]


@functools.lru_cache(maxsize=1)
def load_knowledge() -> Knowledge:
    """The shipped knowledge base, loaded once per process.

    Parsing and validating the YAML takes about a tenth of a second, which matters for a
    one-shot command, so the validated result is kept in the user's cache directory
    (B12DX_CACHE_DIR, else XDG_CACHE_HOME/b12dx), keyed by a digest of the data files and
    versions; it holds no patient data. If the cache cannot be read or written, the files
    are simply loaded.
    """
    cache = _cache_dir() / f"knowledge-{_digest(DATA_DIR)}.pickle"
    try:
        with cache.open("rb") as f:
            cached = pickle.load(f)
        if isinstance(cached, Knowledge):
            return cached
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        pass
    kb = load_knowledge_from(DATA_DIR)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache.parent, delete=False) as tmp:
            pickle.dump(kb, tmp, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp.name, cache)
    except OSError:
        pass
    return kb


# --- consistency checks -------------------------------------------------------------


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
        if sid != "@weakness" and sid not in kb.symptoms:
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
    for s in kb.symptoms.values():
        if s.group not in kb.symptom_groups:
            yield f"symptoms.{s.id}: unknown group {s.group!r}"
        for place in (s.elsewhere, s.elsewhere_in_pregnancy):
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
