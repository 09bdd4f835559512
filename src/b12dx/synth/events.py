"""A population block -> its records (conditions, orders, doses, results, observations).

The records are flat numpy arrays, one set per kind, each row naming a person and a
concept (an index into ``Concepts``), sorted by person. The concepts and their codes
come from the knowledge base's own code tables (conditions.yaml, symptoms.yaml,
medications.yaml, labs.yaml, fhir.yaml): nothing here types a code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from b12dx.knowledge.loader import Knowledge
from b12dx.models.knowledge import Code
from b12dx.synth.population import (
    B12_UNITS,
    LOADING_OFFSETS,
    MAINTENANCE_DAYS,
    MMA_UNITS,
    PMOL_PER_NG,
    SYMPTOMS,
    YEAR,
    Population,
)

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]

# OMOP reserves concept ids above 2,000,000,000 for local concepts.
FIRST_LOCAL_CONCEPT = 2_000_000_001
OMOP_VOCABULARY = {
    "SNOMED CT": "SNOMED",
    "LOINC": "LOINC",
    "RxNorm": "RxNorm",
    "ICD-10": "ICD10",
    "ICD-10-CM": "ICD10CM",
    "ATC": "ATC",
}


@dataclass(frozen=True)
class Concept:
    key: str
    domain: str  # OMOP domain_id
    concept_class: str
    code: Code

    @property
    def vocabulary(self) -> str:
        return OMOP_VOCABULARY[self.code.system]


def _pick(codes: list[Code], *systems: str, contains: str = "") -> Code:
    """The first code of the first system that has one, verified codes first."""
    for system in systems:
        found = [c for c in codes if c.system == system and contains in c.display]
        found.sort(key=lambda c: not c.verified)
        if found:
            return found[0]
    raise LookupError(f"no {'/'.join(systems)} code {contains!r} in {codes}")


class Concepts:
    """Every concept the synthetic records use, in a fixed order (so fixed local ids)."""

    def __init__(self, kb: Knowledge) -> None:
        c, m, s, lab = kb.conditions, kb.medications, kb.symptoms, kb.labs
        entries = [
            Concept("type2_diabetes", "Condition", "Disorder",
                    _pick(c["type2_diabetes"].codes, "SNOMED CT")),
            Concept("diabetic_neuropathy", "Condition", "Disorder",
                    _pick(c["diabetic_neuropathy"].codes, "SNOMED CT")),
            Concept("pernicious_anemia", "Condition", "Disorder",
                    _pick(c["pernicious_anemia"].codes, "SNOMED CT")),
            Concept("gastrectomy", "Procedure", "Procedure",
                    _pick(c["gastrectomy"].codes, "SNOMED CT")),
            Concept("bariatric_surgery", "Procedure", "Procedure",
                    _pick(c["bariatric_surgery"].codes, "SNOMED CT")),
            Concept("ileal_resection", "Procedure", "Procedure",
                    _pick(c["ileal_resection"].codes, "SNOMED CT")),
            *(Concept(f"symptom:{sid}", "Condition", "Clinical Finding",
                      _pick(s[sid].codes, "SNOMED CT")) for sid in SYMPTOMS),
            Concept("metformin", "Drug", "Clinical Drug",
                    _pick(m["metformin"].codes, "RxNorm", contains="MG")),
            Concept("proton_pump_inhibitor", "Drug", "Clinical Drug",
                    _pick(m["proton_pump_inhibitor"].codes, "RxNorm", contains="MG")),
            Concept("h2_blocker", "Drug", "Ingredient", _pick(m["h2_blocker"].codes, "RxNorm")),
            Concept("folic_acid", "Drug", "Ingredient", _pick(m["folic_acid"].codes, "RxNorm")),
            Concept("hydroxocobalamin", "Drug", "Ingredient",
                    _pick(kb.fhir.b12_drugs["hydroxocobalamin"], "RxNorm")),
            Concept("total_b12:mass", "Measurement", "Lab Test",
                    _pick(lab["total_b12"].codes, "LOINC", contains="[Mass/volume]")),
            Concept("total_b12:molar", "Measurement", "Lab Test",
                    _pick(lab["total_b12"].codes, "LOINC", contains="[Moles/volume]")),
            Concept("mma", "Measurement", "Lab Test", _pick(lab["mma"].codes, "LOINC")),
            Concept("diet:vegetarian", "Observation", "Social Context",
                    _pick(kb.fhir.diet["vegetarian"], "SNOMED CT")),
            Concept("diet:vegan", "Observation", "Social Context",
                    _pick(kb.fhir.diet["vegan"], "SNOMED CT")),
            Concept("nitrous_oxide", "Observation", "ATC 5th",
                    _pick(kb.exposures["nitrous_oxide"].codes, "ATC")),
        ]  # fmt: skip
        self.entries: tuple[Concept, ...] = tuple(entries)
        self.index = {e.key: i for i, e in enumerate(entries)}

    def __getitem__(self, key: str) -> int:
        return self.index[key]

    def concept_id(self, idx: npt.NDArray[np.integer] | int) -> npt.NDArray[np.int64]:
        return np.asarray(idx, dtype=np.int64) + FIRST_LOCAL_CONCEPT


@dataclass
class Rows:
    """One kind of record: parallel arrays, sorted by person."""

    person: I64
    concept: I32
    day: I32  # days before as_of
    end_day: I32  # orders: the last day of the order's validity (may be after as_of)
    value: F64  # results: the value as written, in ``unit``
    unit: npt.NDArray[np.int8]  # results: index into the unit names of the table
    active: npt.NDArray[np.bool_]  # orders: the current order of a course

    def __len__(self) -> int:
        return len(self.person)


@dataclass
class Records:
    conditions: Rows  # diagnoses and symptoms
    procedures: Rows
    orders: Rows  # medicine orders, one per yearly renewal
    doses: Rows  # B12 injections given
    results: Rows  # lab results; unit indexes RESULT_UNITS
    observations: Rows  # diet and recreational nitrous oxide


RESULT_UNITS = B12_UNITS + MMA_UNITS


def _rows(
    person: I64,
    concept: npt.NDArray[np.integer] | int,
    day: I32,
    *,
    end_day: I32 | None = None,
    value: F64 | None = None,
    unit: npt.NDArray[np.integer] | None = None,
    active: npt.NDArray[np.bool_] | None = None,
) -> Rows:
    n = len(person)
    return Rows(
        person=person.astype(np.int64),
        concept=np.broadcast_to(np.asarray(concept, dtype=np.int32), (n,)).copy(),
        day=day.astype(np.int32),
        end_day=(end_day if end_day is not None else np.full(n, -1)).astype(np.int32),
        value=(value if value is not None else np.zeros(n)).astype(np.float64),
        unit=(unit if unit is not None else np.zeros(n)).astype(np.int8),
        active=(active if active is not None else np.zeros(n, dtype=bool)),
    )


def _concat(parts: list[Rows]) -> Rows:
    out = Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in Rows.__dataclass_fields__))
    order = np.argsort(out.person, kind="stable")
    return Rows(*(getattr(out, f)[order] for f in Rows.__dataclass_fields__))


def _present(pop: Population, days: I32, concept: npt.NDArray[np.integer] | int) -> Rows:
    has = days >= 0
    conc = concept[has] if isinstance(concept, np.ndarray) else concept
    return _rows(pop.person[has], conc, days[has])


def _courses(pop: Population, days: I32, concept: int) -> Rows:
    """A course since ``days`` as yearly orders; the latest one is active."""
    has = np.flatnonzero(days >= 0)
    start = days[has]
    counts = start // YEAR + 1
    rep = np.repeat(np.arange(len(has)), counts)
    k = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts)
    order_day = start[rep] - YEAR * k
    return _rows(
        pop.person[has][rep], concept, order_day,
        end_day=order_day - YEAR + 1, active=k == counts[rep] - 1,
    )  # fmt: skip


def _injections(pop: Population, concept: int) -> Rows:
    has = np.flatnonzero(pop.tx_day >= 0)
    tx, stop = pop.tx_day[has], pop.tx_stop[has]
    loading = (tx[:, None] - np.asarray(LOADING_OFFSETS)[None, :]).ravel()
    load_person = np.repeat(has, len(LOADING_OFFSETS))
    base = tx - LOADING_OFFSETS[-1]
    m = np.clip((base - stop) // MAINTENANCE_DAYS, 0, 40)
    rep = np.repeat(np.arange(len(has)), m)
    j = np.arange(len(rep)) - np.repeat(np.cumsum(m) - m, m) + 1
    maint = base[rep] - MAINTENANCE_DAYS * j
    person_idx = np.concatenate([load_person, has[rep]])
    day = np.concatenate([loading, maint]).astype(np.int32)
    keep = day >= 0
    return _rows(pop.person[person_idx[keep]], concept, day[keep])


def _results(pop: Population, c: Concepts) -> Rows:
    b = np.flatnonzero(pop.b12_day >= 0)
    unit = pop.b12_unit[b]
    molar = unit == B12_UNITS.index("pmol/L")
    b12_value = np.where(molar, pop.b12_pmol[b], pop.b12_pmol[b] / PMOL_PER_NG).round()
    b12 = _rows(
        pop.person[b], np.where(molar, c["total_b12:molar"], c["total_b12:mass"]),
        pop.b12_day[b], value=b12_value, unit=unit,
    )  # fmt: skip
    m = np.flatnonzero(pop.mma_day >= 0)
    nmol = pop.mma_unit[m] == MMA_UNITS.index("nmol/L")
    mma_value = np.where(nmol, (pop.mma_umol[m] * 1000).round(), pop.mma_umol[m].round(2))
    mma = _rows(
        pop.person[m], c["mma"], pop.mma_day[m], value=mma_value,
        unit=pop.mma_unit[m] + len(B12_UNITS),
    )  # fmt: skip
    return _concat([b12, mma])


def records(pop: Population, c: Concepts) -> Records:
    symptom_concepts = np.array([c[f"symptom:{s}"] for s in SYMPTOMS], dtype=np.int32)
    has_symptom = pop.symptom >= 0
    symptom_days = np.where(has_symptom, pop.symptom_day, -1).astype(np.int32)
    conditions = _concat(
        [
            _present(pop, pop.t2d_day, c["type2_diabetes"]),
            _present(pop, pop.neuropathy_day, c["diabetic_neuropathy"]),
            _present(pop, pop.pa_day, c["pernicious_anemia"]),
            _present(pop, symptom_days, symptom_concepts[np.maximum(pop.symptom, 0)]),
        ]
    )
    procedures = _concat(
        [
            _present(pop, pop.gastrectomy_day, c["gastrectomy"]),
            _present(pop, pop.bariatric_day, c["bariatric_surgery"]),
            _present(pop, pop.ileal_day, c["ileal_resection"]),
        ]
    )
    orders = _concat(
        [
            _courses(pop, pop.metformin_day, c["metformin"]),
            _courses(pop, pop.ppi_day, c["proton_pump_inhibitor"]),
            _courses(pop, pop.h2_day, c["h2_blocker"]),
            _courses(pop, pop.folic_day, c["folic_acid"]),
        ]
    )
    diet_concepts = np.array([-1, c["diet:vegetarian"], c["diet:vegan"]], dtype=np.int32)
    observations = _concat(
        [
            _present(pop, np.where(pop.diet > 0, pop.diet_day, -1).astype(np.int32),
                     diet_concepts[pop.diet]),
            _present(pop, pop.n2o_day, c["nitrous_oxide"]),
        ]
    )  # fmt: skip
    return Records(
        conditions=conditions,
        procedures=procedures,
        orders=orders,
        doses=_concat([_injections(pop, c["hydroxocobalamin"])]),
        results=_results(pop, c),
        observations=observations,
    )
