"""The screening tables: every input is normalized into these tables before any rule
runs, so the rules are written once for FHIR and OMOP alike.

Ids are the knowledge base's (``medication_id`` "metformin", ``condition_id``
"gastrectomy", ``test`` "total_b12", finding ids of symptoms, diets and exposures). Lab
values are in the test's SI unit, with the unit family the result was reported in (the
profiles band a total B12 by the family it came in: ng/L results against the ng/L
cut-offs, pmol/L ones against the pmol/L cut-offs).

- person: one row per patient.
- medication: one row per order or statement; ``end_date`` null means open (still
  ongoing as recorded), a stopped order with no end has ``end_date`` = ``start_date``.
- b12_dose: B12 given (administrations, or drug exposures of B12 with a route).
- condition: diagnoses and operations; ``end_date`` null while active.
- lab: one row per result.
- finding: symptoms, diets and exposures recorded on a date.
- observation_period: when a person was under observation (OMOP); none means always.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

PERSON = pa.schema(
    [
        ("person_id", pa.string()),
        ("birth_date", pa.date32()),
        ("sex", pa.string()),
        ("death_date", pa.date32()),
        # The practice or care site the person is registered with, where the input says
        # (OMOP person.care_site_id, FHIR Patient.managingOrganization or
        # generalPractitioner): the report's breakdown by site. Null when not recorded.
        ("care_site", pa.string()),
    ]
)
MEDICATION = pa.schema(
    [
        ("person_id", pa.string()),
        ("medication_id", pa.string()),
        ("start_date", pa.date32()),
        ("end_date", pa.date32()),
    ]
)
B12_DOSE = pa.schema(
    [
        ("person_id", pa.string()),
        ("date", pa.date32()),
        ("route", pa.string()),
        ("drug", pa.string()),
    ]
)
CONDITION = pa.schema(
    [
        ("person_id", pa.string()),
        ("condition_id", pa.string()),
        ("start_date", pa.date32()),
        ("end_date", pa.date32()),
    ]
)
LAB = pa.schema(
    [
        ("person_id", pa.string()),
        ("test", pa.string()),
        ("value_si", pa.float64()),
        ("value_text", pa.string()),
        ("unit_family", pa.string()),
        ("date", pa.date32()),
    ]
)
# OMOP observation periods: a person is screened only on a day one of theirs covers. A
# source without any (a FHIR export) leaves the table empty, and then everyone counts.
OBSERVATION_PERIOD = pa.schema(
    [
        ("person_id", pa.string()),
        ("start_date", pa.date32()),
        ("end_date", pa.date32()),
    ]
)
FINDING = pa.schema(
    [
        ("person_id", pa.string()),
        ("kind", pa.string()),  # symptom | diet | exposure | pregnancy
        ("id", pa.string()),
        ("date", pa.date32()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "person": PERSON,
    "medication": MEDICATION,
    "b12_dose": B12_DOSE,
    "condition": CONDITION,
    "lab": LAB,
    "finding": FINDING,
    "observation_period": OBSERVATION_PERIOD,
}


@dataclass(frozen=True)
class ScreeningTables:
    """Where the screening tables are: one Parquet file each, in ``directory``."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.parquet"


def write_tables(directory: Path, tables: dict[str, pa.Table]) -> ScreeningTables:
    """Write Arrow tables (cast to the schemas; a missing one is written empty)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in SCHEMAS.items():
        table = tables.get(name)
        table = schema.empty_table() if table is None else table.select(schema.names).cast(schema)
        pq.write_table(table, directory / f"{name}.parquet")
    return ScreeningTables(directory)


def rows_table(name: str, rows: list[dict[str, object]]) -> pa.Table:
    """A table of one schema from row dicts (hand-built inputs, tests)."""
    return pa.Table.from_pylist(rows, schema=SCHEMAS[name])
