"""An assessment as CDS Hooks cards (CDS Hooks 2.0.1, CDS Service Response).

One card when there is something to act on (a red flag, testing due, a deficiency to
treat, maintenance overdue, folic acid without B12); none otherwise, so opening a chart
does not nag. The indicator follows the urgency (cds.yaml); the summary stays under 140
characters; the detail is Markdown; suggestions carry the same ServiceRequest and
MedicationRequest that ``b12dx assess --fhir`` writes; the link opens the full
assessment in the clinician view, the record travelling in the URL fragment (which a
browser never sends to a server, so no log sees it).
"""

from __future__ import annotations

import uuid
from typing import Any

from b12dx.fhir.out import medication_request, ordered_test_codes, service_request
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Assessment

SUMMARY_LIMIT = 139  # "One-sentence, <140-character summary message"
ACTIONABLE_WARNINGS = frozenset({"maintenance_overdue", "folic_acid_masking"})
INDICATOR_ORDER = {"info": 0, "warning": 1, "critical": 2}
OVERRIDE_SYSTEM = "https://b12dx.org/cds/override-reason"


def sentence(*candidates: str, limit: int = SUMMARY_LIMIT) -> str:
    """The first candidate that fits the summary as one whole sentence (never cut): the
    candidates run from the most to the least said, and the last must fit."""
    for text in candidates:
        text = " ".join(text.split()).rstrip(".;: ")
        if text and len(text) + 1 <= limit:
            return text + "."
    raise ValueError(f"no summary fits in {limit} characters: {candidates[-1]!r}")


def _same_day(result: Assessment) -> list[str]:
    """The triage alarms that need the person seen today (below an emergency)."""
    alarms = result.triage.alarms if result.triage is not None else []
    return [a.name for a in alarms if a.level == "urgent"]


def actionable(result: Assessment) -> bool:
    return bool(
        result.red_flags
        or _same_day(result)
        or result.testing_recommended
        or result.deficiency_status in ("confirmed", "likely", "indeterminate")
        or any(w.id in ACTIONABLE_WARNINGS for w in result.warnings)
    )


def indicator(kb: Knowledge, result: Assessment) -> str:
    level = kb.cds.indicator_by_urgency[result.urgency]
    for w in result.warnings:
        if w.severity in INDICATOR_ORDER and INDICATOR_ORDER[w.severity] > INDICATOR_ORDER[level]:
            level = w.severity
    return level


def summary(kb: Knowledge, result: Assessment) -> str:
    first_step = result.next_steps[0].text.rstrip(".") if result.next_steps else ""
    if result.red_flags:
        flag = result.red_flags[0].name.lower()
        emergency = kb.urgency["emergency"].text.rstrip(".")
        return sentence(
            f"Red flag ({flag}), not B12 until proven otherwise: {emergency[:1].lower()}"
            f"{emergency[1:]}",
            f"Red flag ({flag}): emergency assessment now, not B12 until proven otherwise",
            "Red flag: emergency assessment now, not B12 until proven otherwise",
        )
    nerves = " with nerve involvement" if result.neurological_involvement else ""
    today = _same_day(result)
    if today:
        found = today[0][:1].lower() + today[0][1:]
        return sentence(
            f"Same-day assessment ({found}), whatever the B12 results",
            "Same-day assessment, whatever the B12 results",
        )
    if result.deficiency_status in ("confirmed", "likely"):
        head = f"B12 deficiency {result.deficiency_status}{nerves}"
    elif result.deficiency_status == "indeterminate":
        head = f"B12 result indeterminate{nerves}"
    elif any(w.id == "maintenance_overdue" for w in result.warnings):
        t = result.treatment
        phase = t.overdue_phase if t is not None and t.overdue_phase else "maintenance"
        head = f"B12 {phase} dose overdue"
    else:
        head = f"Possible B12 deficiency{nerves} ({result.suspicion.level} suspicion)"
    step = f"{head}: {first_step[:1].lower()}{first_step[1:]}" if first_step else head
    return sentence(step, f"{head}; see the next steps", head)


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def detail(result: Assessment) -> str:
    parts = [
        f"**Deficiency status:** {result.deficiency_status.replace('_', ' ')} · "
        f"**suspicion:** {result.suspicion.level} · **urgency:** {result.urgency.replace('_', ' ')}"
    ]
    if result.red_flags:
        parts.append("**Red flags**\n" + _bullets([f.text for f in result.red_flags]))
    if result.suspicion.reasons:
        parts.append("**Why**\n" + _bullets([r.text for r in result.suspicion.reasons]))
    if result.labs:
        parts.append(
            "**Results**\n"
            + _bullets(
                [
                    f"{lab.test.replace('_', ' ')} {lab.value}{' ' + lab.unit if lab.unit else ''}"
                    f" ({lab.band})" + (f", {lab.date}" if lab.date else "")
                    for lab in result.labs
                ]
            )
        )
    if result.next_steps:
        parts.append("**Next steps**\n" + _bullets([s.text for s in result.next_steps]))
    if result.warnings:
        parts.append(
            "**Warnings**\n"
            + _bullets(
                [f"**{w.text}**" if w.severity == "critical" else w.text for w in result.warnings]
            )
        )
    t = result.treatment
    if t is not None:
        when = "under way" if t.under_way else f"start {t.start}"
        parts.append(f"**Treatment:** {t.name}, {t.dose} {t.route.upper()} ({when}). {t.text}")
    if result.notes:
        parts.append("**Notes**\n" + _bullets([n.text for n in result.notes]))
    if result.fhir_input is not None:
        parts.append(
            f"_Built from {len(result.fhir_input.used)} of "
            f"{len(result.fhir_input.used) + len(result.fhir_input.ignored)} resources in the "
            "record._"
        )
    # The evidence a clinician can check: the consumer articles cited for patients'
    # wording (kind seed) are not clinical sources.
    evidence = {c.id for c in result.citations if c.kind != "seed"}
    sources = sorted({s for r in result.suspicion.reasons for s in r.sources} & evidence)
    if sources:
        parts.append(f"Sources: {', '.join(sources)}.")
    return "\n\n".join(parts)


def source(kb: Knowledge, result: Assessment) -> dict[str, Any]:
    profile = kb.profile(result.profile)
    guideline = kb.sources[profile.sources[0]]
    out: dict[str, Any] = {"label": f"b12dx · {guideline.title}"}
    if guideline.url:
        out["url"] = guideline.url
    return out


def override_reasons(kb: Knowledge) -> list[dict[str, str]]:
    return [
        {"system": OVERRIDE_SYSTEM, "code": r.code, "display": r.display}
        for r in kb.cds.override_reasons
    ]


def create_suggestion(
    label: str, description: str, resource: dict[str, Any], recommended: bool = True
) -> dict[str, Any]:
    """A card's suggestion that creates one resource (a draft order)."""
    return {
        "label": label,
        "uuid": str(uuid.uuid4()),
        "isRecommended": recommended,
        "actions": [{"type": "create", "description": description, "resource": resource}],
    }


def suggestions(kb: Knowledge, result: Assessment, patient: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    reason = f"B12 deficiency {result.deficiency_status}, suspicion {result.suspicion.level}"
    t = result.treatment
    if t is not None and not t.under_way and not result.red_flags:
        out.append(
            create_suggestion(
                f"Start {t.name}: {t.dose} {t.route.upper()}",
                f"Propose {t.name} as a dated schedule",
                medication_request(kb, t, patient),
                recommended=any(s.id == "start_treatment_now" for s in result.next_steps),
            )
        )
    for step in result.next_steps:
        if not ordered_test_codes(kb, step.id) or result.red_flags:
            continue
        text = step.text.rstrip(".")
        resource = service_request(kb, step.id, patient, reason)
        out.append(create_suggestion(text, text, resource, recommended=not out))
    return out


def patient_view_cards(
    kb: Knowledge, result: Assessment, patient: str, link: str | None
) -> list[dict[str, Any]]:
    """The card for an assessment worth acting on (none otherwise). ``link`` opens the
    full assessment in the clinician view: a URL that refers to the record, never one
    that holds it."""
    if not actionable(result):
        return []
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": summary(kb, result),
        "detail": detail(result),
        "indicator": indicator(kb, result),
        "source": source(kb, result),
        "overrideReasons": override_reasons(kb),
    }
    if link is not None:
        card["links"] = [
            {"label": "Open the full assessment in b12dx", "url": link, "type": "absolute"}
        ]
    offered = suggestions(kb, result, patient)
    if offered:
        card["suggestions"] = offered
        card["selectionBehavior"] = "any"
    return [card]
