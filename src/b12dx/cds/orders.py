"""order-select and order-sign: checks on medicine orders as they are written.

The checks and their wording are ``order_checks`` in ``knowledge/data/cds.yaml``:

- folic acid for a patient with possible B12 deficiency and no B12 treatment is a
  critical card (folic acid alone can mask the deficiency while nerve damage goes on);
  in pregnancy it is neural tube prevention: an info card that asks for a B12 test as
  well, never the masking card or a suggestion to remove the order;
- metformin, or an acid suppressant that will have been taken for the long-term
  threshold (the risk factor's own duration in risk_factors.yaml), with no B12 result
  in the last 12 months, gets a card suggesting a B12 test.

Whether the patient may be deficient is the engine's answer on their record; whether a
medicine is a risk factor is the engine's risk-factor rule with the drafted order added.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from b12dx.cds.cards import create_suggestion, override_reasons, sentence
from b12dx.engine.assess import assess
from b12dx.fhir.medicines import medicine_of
from b12dx.fhir.out import medication_request, service_request
from b12dx.fhir.record import FhirImport
from b12dx.fhir.values import OutsideCalendar, months_between, planned_days
from b12dx.knowledge.loader import Knowledge
from b12dx.models.assessment import Assessment
from b12dx.models.patient import MAX_DURATION_MONTHS

POSSIBLE = ("confirmed", "likely", "indeterminate")


# Elements of a draft order that are strings wherever they appear (FHIR R4), and those
# that are strings in a Coding, or a CodeableConcept (``text``: elsewhere a Narrative).
_STRINGS = ("resourceType", "id", "status", "intent", "reference", "display")
_CODING_STRINGS = ("system", "version", "code", "display", "id")


def draft_type_problems(bundle: Mapping[str, Any]) -> list[str]:
    """Each element of the draft orders the order checks read that is of the wrong JSON
    type (a number, list or object where FHIR has a string), by its path. Elements FHIR
    requires but a draft leaves out are not asked for: EHRs send drafts before they are
    complete (the CDS Hooks specification's own examples do)."""
    problems: list[str] = []
    stack: list[tuple[Any, str]] = [(bundle, "context.draftOrders")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack += [(v, f"{path}[{i}]") for i, v in enumerate(node)]
            continue
        if not isinstance(node, Mapping):
            continue
        in_coding = path.endswith("]") and path.rsplit(".", 1)[-1].startswith("coding[")
        strings = _CODING_STRINGS if in_coding else _STRINGS
        if "coding" in node:
            strings = (*strings, "text")
        for key, value in node.items():
            where = f"{path}.{key}"
            if key in strings and value is not None and not isinstance(value, str):
                problems.append(f"{where}: expected a string, not {type(value).__name__}")
            elif isinstance(value, Mapping | list):
                stack.append((value, where))
    return sorted(problems)


def draft_orders(context: Mapping[str, Any], selected_only: bool) -> list[dict[str, Any]]:
    bundle = context.get("draftOrders")
    entries = bundle.get("entry") if isinstance(bundle, Mapping) else None
    resources = [
        dict(e["resource"])
        for e in (entries if isinstance(entries, list) else [])
        if isinstance(e, Mapping) and isinstance(e.get("resource"), Mapping)
    ]
    if not selected_only:
        return resources
    chosen = {s for s in context.get("selections") or [] if isinstance(s, str)}
    return [r for r in resources if f"{r.get('resourceType')}/{r.get('id')}" in chosen]


def _b12_recent(result: Assessment, as_of: dt.date, months: int) -> bool:
    return any(
        lab.test in ("total_b12", "active_b12")
        and lab.date is not None
        and months_between(lab.date, as_of) < months
        for lab in result.labs
    )


def _source(kb: Knowledge, source_ids: list[str]) -> dict[str, Any]:
    first = kb.sources[source_ids[0]]
    out: dict[str, Any] = {"label": f"b12dx · {first.title}"}
    if first.url:
        out["url"] = first.url
    return out


def order_cards(
    kb: Knowledge,
    imported: FhirImport,
    orders: list[dict[str, Any]],
    as_of: dt.date,
    patient: str,
    profile: str | None = None,
) -> list[dict[str, Any]]:
    """The cards for the drafted orders, given the patient's record as imported."""
    drafted: dict[str, tuple[dict[str, Any], int]] = {}
    for order in orders:
        if order.get("resourceType") != "MedicationRequest":
            continue
        found = medicine_of(order, kb)
        if found is None:
            continue
        try:
            days = planned_days(order) or 0
        except OutsideCalendar:
            continue  # a supply longer than the calendar: no course can be counted from it
        drafted.setdefault(found, (order, days))
    if not drafted:
        return []

    record = imported.record
    current = assess(record, profile=profile, knowledge=kb)
    treated = bool(record.get("b12_treatment")) or any(
        m["id"] == "b12_supplement" for m in record.get("medications", [])
    )
    treated = treated or "b12_supplement" in drafted
    cards: list[dict[str, Any]] = []
    for check in kb.cds.order_checks:
        hits = [m for m in check.medications if m in drafted]
        if not hits:
            continue
        mid = hits[0]
        order, days = drafted[mid]
        name = kb.medications[mid].name
        if check.id in ("folic_acid_without_b12", "folic_acid_in_pregnancy"):
            # Folic acid in pregnancy is neural tube prevention: never the masking card or
            # a suggestion to remove it, only a test of B12 alongside (rule
            # note.folic_acid_pregnancy); outside pregnancy, the masking card.
            in_pregnancy = bool(record.get("pregnant"))
            possible = current.testing_recommended or current.deficiency_status in POSSIBLE
            if (check.id == "folic_acid_in_pregnancy") != in_pregnancy or not possible:
                continue
            if treated:
                continue
            if in_pregnancy:
                cards.append(_pregnancy_folic_card(kb, check, patient))
            else:
                cards.append(_folic_card(kb, check, current, order, patient))
            continue
        # Monitoring: is the medicine a risk factor once this order is taken?
        meds = [m for m in record.get("medications", []) if m["id"] != mid]
        had = next((m for m in record.get("medications", []) if m["id"] == mid), None)
        # Never longer than a lifetime, as the contract takes it.
        months = min((had or {}).get("duration_months", 0) + days // 30, MAX_DURATION_MONTHS)
        with_order = {**record, "medications": [*meds, {"id": mid, "duration_months": months}]}
        after = assess(with_order, profile=profile, knowledge=kb)
        is_risk = any(
            mid in (kb.risk_factors[rf.id].trigger.medication or [])
            for rf in after.risk_factors
            if rf.id in kb.risk_factors
        )
        if not is_risk or _b12_recent(after, as_of, check.monitoring_months or 12):
            continue
        test = service_request(kb, "order_total_b12", patient, f"Long-term {name.lower()}")
        cards.append(
            _order_card(
                kb,
                check,
                sentence(
                    check.summary.format(medicine=name),
                    check.summary.format(medicine="This medicine"),
                ),
                " ".join(check.detail.format(medicine=name.lower()).split()),
                [create_suggestion("Order a B12 test", "Order total serum B12", test)],
            )
        )
    return cards


def _order_card(
    kb: Knowledge,
    check: Any,
    summary: str,
    detail: str,
    suggestions: list[dict[str, Any]],
    selection: str = "at-most-one",
) -> dict[str, Any]:
    """A card about an order being signed, from its check in the knowledge base."""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": summary,
        "detail": detail,
        "indicator": check.indicator,
        "source": _source(kb, check.sources),
        "suggestions": suggestions,
        "selectionBehavior": selection,
        "overrideReasons": override_reasons(kb),
    }


def _pregnancy_folic_card(kb: Knowledge, check: Any, patient: str) -> dict[str, Any]:
    test = service_request(kb, "order_active_b12", patient, "Possible B12 deficiency in pregnancy")
    suggestion = create_suggestion(
        "Order an active B12 test as well", "Order active B12 (holotranscobalamin)", test
    )
    detail = " ".join(check.detail.split())
    return _order_card(kb, check, sentence(check.summary), detail, [suggestion])


def _folic_card(
    kb: Knowledge, check: Any, current: Assessment, order: dict[str, Any], patient: str
) -> dict[str, Any]:
    suggestions: list[dict[str, Any]] = []
    if current.treatment is not None and current.deficiency_status in ("confirmed", "likely"):
        t = current.treatment
        suggestions.append(
            create_suggestion(
                f"Start {t.name} first", f"Propose {t.name}", medication_request(kb, t, patient)
            )
        )
    else:
        test = service_request(kb, "order_total_b12", patient, "Folic acid ordered")
        suggestions.append(
            create_suggestion("Order a B12 test before folic acid", "Order total serum B12", test)
        )
    if order.get("id"):
        suggestions.append(
            {
                "label": "Remove the folic acid order",
                "uuid": str(uuid.uuid4()),
                "actions": [
                    {
                        "type": "delete",
                        "description": "Remove the draft folic acid order",
                        "resourceId": f"MedicationRequest/{order['id']}",
                    }
                ],
            }
        )
    why = "; ".join(r.text for r in current.suspicion.reasons[:3])
    detail = " ".join(check.detail.split()) + (
        f"\n\n**Why B12 deficiency is possible:** {why}" if why else ""
    )
    return _order_card(kb, check, sentence(check.summary), detail, suggestions, "any")
