"""How soon the person needs care (clinical-reference §5). Red flags always win: a person
with one is sent to emergency care and never reassured."""

from __future__ import annotations

from b12dx.engine.explain import explained
from b12dx.engine.findings import Findings
from b12dx.engine.status import StatusResult
from b12dx.engine.suspicion import SuspicionResult
from b12dx.engine.treatment import TreatmentDecision
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Reason

# Risk factors that call for periodic checks even without symptoms.
MONITORED_CAUSES = ("medication", "malabsorption", "genetic")


def needs_monitoring(f: Findings) -> bool:
    return f.has_cause(*MONITORED_CAUSES) or (
        (f.patient.pregnant or f.patient.breastfeeding) and f.has_cause("dietary")
    )


def decide(
    kb: Knowledge, f: Findings, s: SuspicionResult, st: StatusResult, t: TreatmentDecision
) -> tuple[str, list[Reason]]:
    def level(name: str, rule: str, text: str | None = None) -> tuple[str, list[Reason]]:
        meaning = kb.urgency[name].text
        body = text if text is not None else kb.rules[rule].text
        return name, [explained(kb, Reason, rule, text=f"{body} ({meaning})")]

    if f.red_flags:
        names = "; ".join(r.name.lower() for r in f.red_flags)
        return level(
            "emergency", "urgency.red_flag", f"Red flags that point away from B12: {names}."
        )
    if t.overdue_since is not None:
        return level(
            "soon",
            "urgency.maintenance_overdue",
            f"Maintenance dose was due on {t.overdue_since} and has not been recorded.",
        )
    if f.doses:
        return level("routine", "urgency.on_treatment")
    if f.neurological and st.deficient:
        return level("urgent", "urgency.neurological_deficiency")
    if f.neurological and s.high and st.status != "unlikely":
        return level("urgent", "urgency.neurological_suspected")
    if f.under_16 and f.neurological and s.testing:
        return level("urgent", "urgency.child_neurological")
    if st.deficient:
        return level("soon", "urgency.deficiency_without_neurological")
    if st.status == "indeterminate":
        return level("soon", "urgency.indeterminate")
    if s.testing and st.status != "unlikely":
        return level("soon", "urgency.testing_indicated")
    if st.status == "unlikely" and f.b12_symptoms:
        return level("routine", "urgency.symptoms_other_cause")
    if s.level != "low" and f.b12_symptoms:
        return level("routine", "urgency.symptoms_review")
    if needs_monitoring(f):
        return level("routine", "urgency.monitoring")
    if f.strain_pattern:
        return level("self_care", "urgency.strain_self_care")
    return level("self_care", "urgency.none")
