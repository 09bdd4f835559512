"""Knowledge-base ids said in words, for every adapter that shows them to a person."""

from __future__ import annotations

from typing import Any

from b12dx.knowledge.loader import Knowledge


def feature_words(kb: Knowledge, feature: str) -> str:
    """A differential's feature in words ("type 2 diabetes", "age 65 or over"), never the
    rule's id ("condition:type2_diabetes", "age_min:65")."""
    kind, _, value = feature.partition(":")
    tables: dict[str, Any] = {
        "symptom": kb.symptoms,
        "group": kb.symptom_groups,
        "condition": kb.conditions,
        "medication": kb.medications,
        "exposure": kb.exposures,
    }
    if kind in tables and value in tables[kind]:
        name = str(tables[kind][value].name)
        return name if name[:2].isupper() else name[:1].lower() + name[1:]
    if kind == "onset":
        return {"sudden": "sudden onset", "gradual": "gradual onset"}.get(value, value)
    if kind == "age_min":
        return f"age {value} or over"
    if kind == "lab":
        test, _, band = value.partition("=")
        name = kb.labs[test].name if test in kb.labs else test
        return f"{name[:1].lower()}{name[1:]} {band}".strip()
    return feature.replace("_", " ")


def short_lab_name(kb: Knowledge, test: str) -> str:
    """A test's name without its parenthesis ("Total serum vitamin B12"), for narrow
    columns."""
    name = kb.labs[test].name if test in kb.labs else test
    return name.split(" (")[0]


def unit_words(unit: str | None) -> str:
    """A unit as a person writes it: "umol/L" (the contract's ASCII spelling) is shown as
    "µmol/L", "ug/L" as "µg/L"; everything else as given."""
    if not unit:
        return ""
    return "µ" + unit[1:] if unit.startswith(("umol", "ug")) else unit
