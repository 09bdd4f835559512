"""Lookup tables built from the knowledge base, to be joined to the input set-wise:
codes -> knowledge ids (the same table ``b12dx.fhir.codes.code_index`` uses for FHIR),
lab units -> SI factor and family, route words and codes -> route."""

from __future__ import annotations

import pyarrow as pa

from b12dx.engine.units import normalise_spelling
from b12dx.fhir.codes import code_index
from b12dx.knowledge.loader import Knowledge


def code_table(kb: Knowledge) -> pa.Table:
    """(system, code, hierarchical, kind, id): every code the knowledge base maps. A
    hierarchical code (ICD-10, ATC) also matches the codes below it (E11 matches E11.9).
    A combination code has a row for each condition it records (``Code.also``)."""
    index = code_index(kb)
    rows = [
        {
            "system": system,
            "code": code,
            "hierarchical": system in index.hierarchical,
            "kind": meaning.kind,
            "id": entry_id,
        }
        for (system, code), meaning in index.table.items()
        for entry_id in meaning.ids
    ]
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("system", pa.string()),
                ("code", pa.string()),
                ("hierarchical", pa.bool_()),
                ("kind", pa.string()),
                ("id", pa.string()),
            ]
        ),
    )


def unit_table(kb: Knowledge) -> pa.Table:
    """(test, unit_key, factor, family): each accepted unit of each numeric test under
    every spelling (normalised: lower case, no spaces, µ as u), with its factor to SI."""
    by_canonical: dict[str, list[str]] = {}
    for spelling, canonical in kb.unit_spellings.items():
        by_canonical.setdefault(normalise_spelling(canonical), []).append(spelling)
    rows = []
    for test in kb.labs.values():
        for unit in test.units:
            key = normalise_spelling(unit.unit)
            for spelling in {key, *by_canonical.get(key, [])}:
                rows.append(
                    {
                        "test": test.id,
                        "unit_key": normalise_spelling(spelling),
                        "factor": unit.factor,
                        "family": unit.family,
                    }
                )
        for alias, unit_name in kb.fhir.lab_unit_aliases.get(test.id, {}).items():
            unit = next(u for u in test.units if u.unit == unit_name)
            rows.append(
                {
                    "test": test.id,
                    "unit_key": normalise_spelling(alias),
                    "factor": unit.factor,
                    "family": unit.family,
                }
            )
    unique = {(r["test"], r["unit_key"]): r for r in rows}
    return pa.Table.from_pylist(
        list(unique.values()),
        schema=pa.schema(
            [
                ("test", pa.string()),
                ("unit_key", pa.string()),
                ("factor", pa.float64()),
                ("family", pa.string()),
            ]
        ),
    )


def route_table(kb: Knowledge) -> pa.Table:
    """(key, route): route codes (SNOMED CT, fhir.yaml routes) and route words."""
    rows = [
        {"key": code.code, "route": route}
        for route, codes in kb.fhir.routes.items()
        for code in codes
    ]
    rows += [
        {"key": word.lower(), "route": route}
        for route, words in kb.screening.route_words.items()
        for word in words
    ]
    return pa.Table.from_pylist(
        rows, schema=pa.schema([("key", pa.string()), ("route", pa.string())])
    )
