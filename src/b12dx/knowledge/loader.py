"""Load the knowledge base files into typed models and check that they hang together.

Every file in ``data/`` holds one topic. Loading validates each entry against its model
(``b12dx.models.knowledge``) and then the references between files
(``knowledge/consistency.py``). A broken knowledge base never reaches the engine.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from b12dx.errors import KnowledgeError, ProfileError
from b12dx.knowledge.consistency import check
from b12dx.models.adapter_knowledge import CdsKnowledge, FhirMapping, ScreeningKnowledge
from b12dx.models.knowledge import (
    AlgorithmStep,
    CareAccess,
    CheckTopic,
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
    # B12 features of the nervous system that count as neurological involvement in an
    # adult; ..._young: under 16 (symptom_groups.yaml involvement_age_groups).
    neurological_symptoms: frozenset[str] = field(default=frozenset())
    neurological_symptoms_young: frozenset[str] = field(default=frozenset())
    # Every symptom of the nervous system, whatever its role (triage reads it), and those
    # of them that are a loss of function (red_flags.yaml's @deficit).
    nervous_system: frozenset[str] = field(default=frozenset())
    deficit_symptoms: frozenset[str] = field(default=frozenset())
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
    nervous = frozenset(
        s.id
        for s in symptoms.values()
        if (
            s.neurological
            if s.neurological is not None
            else s.group in groups and groups[s.group].neurological
        )
    )
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
            if s.role == "b12"
            and s.id in nervous
            and "adult" in (groups[s.group].involvement_age_groups or ["adult"])
        ),
        neurological_symptoms_young=frozenset(
            s.id for s in symptoms.values() if s.role == "b12" and s.id in nervous
        ),
        nervous_system=nervous,
        deficit_symptoms=frozenset(sid for sid in nervous if symptoms[sid].deficit),
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
