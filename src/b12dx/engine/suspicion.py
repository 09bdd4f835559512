"""Is B12 testing indicated, and how strong is the clinical suspicion? (clinical-reference
§2 testing rule, §1 neurological involvement)."""

from __future__ import annotations

from dataclasses import dataclass

from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.labs import LabSummary
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Reason

_LEVEL = {"low": 0, "moderate": 1, "high": 2}
# The characteristic picture of subacute combined degeneration (seed-leg-weakness,
# seed-weakness): loss of the dorsal columns' senses (position, vibration) together with
# ataxia or motor signs. Tingling with poor concentration is not it.
_DORSAL_COLUMN = frozenset({"loss_of_proprioception", "loss_of_vibration_sense"})
_WITH_GROUPS = frozenset({"balance", "motor"})
# A course that comes and goes argues for multiple sclerosis, not B12 (seed-weakness).
_AGAINST_PATTERN = frozenset({"relapsing_remitting_course"})


@dataclass(frozen=True)
class SuspicionResult:
    testing: bool
    level: str
    reasons: list[Reason]

    @property
    def high(self) -> bool:
        return self.level == "high"


def _names(kb: Knowledge, ids: list[str], limit: int = 4) -> str:
    names = [kb.symptoms[i].name.lower() for i in ids[:limit]]
    more = len(ids) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def judge(kb: Knowledge, f: Findings, labs: LabSummary) -> SuspicionResult:
    reasons: list[tuple[str, Reason]] = []

    def add(level: str, rule: str, text: str) -> None:
        reasons.append((level, explained(kb, Reason, rule, text=text)))

    rf_names = ", ".join(m.factor.name.lower() for m in f.risk_factors)
    macrocytosis = labs.band("mcv") == "high"
    anaemia = labs.band("hemoglobin") == "low"
    signs = [*f.b12_symptoms]  # a diagnosed neuropathy among them (presents_as)
    blood_signs = [w for w, on in (("macrocytosis", macrocytosis), ("anaemia", anaemia)) if on]
    testing = False

    if (signs or blood_signs) and f.risk_factors:
        testing = True
        what = _names(kb, f.b12_symptoms) if f.b12_symptoms else ", ".join(blood_signs)
        add(
            "moderate",
            "testing.symptom_and_risk_factor",
            f"Symptoms or signs ({what}) with at least one risk factor ({rf_names}): "
            "offer a B12 test.",
        )
    if f.nitrous_oxide and f.neurological:
        testing = True
        add(
            "high",
            "testing.nitrous_oxide_neurological",
            "Nitrous oxide use with neurological symptoms: test regardless of other risk "
            "factors (homocysteine or MMA first).",
        )
    if len(f.neuro_groups) >= 2 and not f.risk_factors:
        testing = True
        add(
            "moderate",
            "testing.neurological_pattern",
            f"Neurological symptoms in more than one system ({_names(kb, f.neuro_symptoms)}) "
            "with no recorded risk factor: B12 deficiency (including undiagnosed pernicious "
            "anaemia) is a treatable cause to exclude.",
        )
    if macrocytosis:
        testing = True
        add(
            "moderate",
            "testing.macrocytosis",
            "Macrocytosis (MCV above 100 fL): check B12 and folate.",
        )

    if f.neurological and f.risk_factors and not f.specific_neurological:
        add(
            "moderate",
            "suspicion.cognitive_alone",
            f"Memory or thinking problems ({_names(kb, f.neuro_symptoms)}) with risk factors "
            f"({rf_names}), with no nerve, cord or eye sign: B12 is checked as part of their "
            "work-up, and a normal result makes deficiency unlikely.",
        )
    elif f.neurological and f.risk_factors:
        add(
            "high",
            "suspicion.neurological_with_risk_factor",
            f"Neurological features ({_names(kb, f.neuro_symptoms)}) with risk factors "
            f"({rf_names}).",
        )
    dorsal = [x for x in f.neuro_symptoms if x in _DORSAL_COLUMN]
    if dorsal and f.neuro_groups & _WITH_GROUPS and not _AGAINST_PATTERN & set(f.symptoms):
        add(
            "high",
            "suspicion.characteristic_pattern",
            "The characteristic pattern: loss of position or vibration sense together with "
            f"ataxia or motor signs ({_names(kb, f.neuro_symptoms)}).",
        )
    if macrocytosis and f.neurological:
        add(
            "high",
            "suspicion.macrocytosis_with_neurological",
            "Macrocytosis together with neurological features.",
        )
    if f.b12_symptoms and f.risk_factors and not f.neurological:
        add(
            "moderate",
            "suspicion.symptoms_with_risk_factor",
            f"Symptoms of deficiency ({_names(kb, f.b12_symptoms)}) with risk factors "
            f"({rf_names}).",
        )
    if f.neurological and not f.risk_factors:
        add(
            "moderate",
            "suspicion.neurological_without_risk_factor",
            f"Neurological features ({_names(kb, f.neuro_symptoms)}) without a recorded risk "
            "factor.",
        )
    if anaemia and not macrocytosis:
        add("moderate", "suspicion.anaemia", "Anaemia on the full blood count.")
    if f.strain_pattern:
        add(
            "low",
            "suspicion.strain_pattern",
            "Sudden weakness linked to exertion, with localised soreness, that improves with "
            "rest and has no sensory or balance signs: the pattern of ordinary strain or "
            "fatigue, not of B12 deficiency.",
        )
    if f.risk_factors and not f.b12_symptoms and not blood_signs:
        add(
            "low",
            "suspicion.risk_factor_only",
            f"Risk factors ({rf_names}) without symptoms or signs of deficiency.",
        )
    if not reasons:
        add(
            "low",
            "suspicion.no_features",
            "No symptom, sign or risk factor of B12 deficiency recorded.",
        )
    abnormal = [
        x
        for x in ("total_b12", "active_b12", "mma")
        if labs.band(x) in ("deficient", "indeterminate", "elevated")
    ]
    if not testing and abnormal:
        # Rule testing.result_on_record: a result that already shows deficiency is never
        # contradicted by "testing not indicated".
        testing = True
        add(
            "moderate",
            "testing.result_on_record",
            f"A B12 result on record is abnormal ({', '.join(kb.labs[x].name for x in abnormal)})"
            ": testing was indicated, and its result is interpreted below.",
        )
    if not testing:
        reasons.append(("low", explained(kb, Reason, "testing.not_indicated")))

    level = max((lvl for lvl, _ in reasons), key=_LEVEL.__getitem__)
    return SuspicionResult(testing, level, [r for _, r in reasons])
