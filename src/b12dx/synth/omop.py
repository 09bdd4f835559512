"""Synthetic records -> OMOP CDM 5.4 tables, written as CSV (``omop``) or Parquet.

Tables: person, condition_occurrence (diagnoses and symptoms: OMOP puts SNOMED clinical
findings in the Condition domain), procedure_occurrence, drug_exposure (medicine orders
and B12 injections), measurement (B12, MMA), observation (diet, recreational nitrous
oxide) and concept. Every column of each CDM 5.4 table is present; what the population
does not model is null, and type concepts are 0 ("no matching concept"). Concept ids
are local (from 2,000,000,001) and each is listed in ``concept`` with its real code.
Each block of people is one Parquet row group (or a slice of the CSV): memory stays
bounded whatever the number of patients.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from b12dx.synth.events import FIRST_LOCAL_CONCEPT, RESULT_UNITS, Concepts, Records, Rows
from b12dx.synth.population import PRACTICE_SHARES, Population, practice_of

MALE, FEMALE = 8507, 8532  # OMOP Gender concepts, as the CDM requires
I64, I32, F64, S, D, TS = (
    pa.int64(),
    pa.int32(),
    pa.float64(),
    pa.string(),
    pa.date32(),
    pa.timestamp("s"),
)

# CDM 5.4 column order and types (ohdsi.github.io/CommonDataModel/cdm54.html).
SCHEMAS: dict[str, list[tuple[str, pa.DataType]]] = {
    "person": [
        ("person_id", I64), ("gender_concept_id", I32), ("year_of_birth", I32),
        ("month_of_birth", I32), ("day_of_birth", I32), ("birth_datetime", TS),
        ("race_concept_id", I32), ("ethnicity_concept_id", I32), ("location_id", I64),
        ("provider_id", I64), ("care_site_id", I64), ("person_source_value", S),
        ("gender_source_value", S), ("gender_source_concept_id", I32),
        ("race_source_value", S), ("race_source_concept_id", I32),
        ("ethnicity_source_value", S), ("ethnicity_source_concept_id", I32),
    ],
    "care_site": [
        ("care_site_id", I64), ("care_site_name", S), ("place_of_service_concept_id", I32),
        ("location_id", I64), ("care_site_source_value", S),
        ("place_of_service_source_value", S),
    ],
    "condition_occurrence": [
        ("condition_occurrence_id", I64), ("person_id", I64), ("condition_concept_id", I64),
        ("condition_start_date", D), ("condition_start_datetime", TS),
        ("condition_end_date", D), ("condition_end_datetime", TS),
        ("condition_type_concept_id", I32), ("condition_status_concept_id", I32),
        ("stop_reason", S), ("provider_id", I64), ("visit_occurrence_id", I64),
        ("visit_detail_id", I64), ("condition_source_value", S),
        ("condition_source_concept_id", I64), ("condition_status_source_value", S),
    ],
    "procedure_occurrence": [
        ("procedure_occurrence_id", I64), ("person_id", I64), ("procedure_concept_id", I64),
        ("procedure_date", D), ("procedure_datetime", TS), ("procedure_end_date", D),
        ("procedure_end_datetime", TS), ("procedure_type_concept_id", I32),
        ("modifier_concept_id", I32), ("quantity", I32), ("provider_id", I64),
        ("visit_occurrence_id", I64), ("visit_detail_id", I64),
        ("procedure_source_value", S), ("procedure_source_concept_id", I64),
        ("modifier_source_value", S),
    ],
    "drug_exposure": [
        ("drug_exposure_id", I64), ("person_id", I64), ("drug_concept_id", I64),
        ("drug_exposure_start_date", D), ("drug_exposure_start_datetime", TS),
        ("drug_exposure_end_date", D), ("drug_exposure_end_datetime", TS),
        ("verbatim_end_date", D), ("drug_type_concept_id", I32), ("stop_reason", S),
        ("refills", I32), ("quantity", F64), ("days_supply", I32), ("sig", S),
        ("route_concept_id", I32), ("lot_number", S), ("provider_id", I64),
        ("visit_occurrence_id", I64), ("visit_detail_id", I64), ("drug_source_value", S),
        ("drug_source_concept_id", I64), ("route_source_value", S),
        ("dose_unit_source_value", S),
    ],
    "measurement": [
        ("measurement_id", I64), ("person_id", I64), ("measurement_concept_id", I64),
        ("measurement_date", D), ("measurement_datetime", TS), ("measurement_time", S),
        ("measurement_type_concept_id", I32), ("operator_concept_id", I32),
        ("value_as_number", F64), ("value_as_concept_id", I64), ("unit_concept_id", I32),
        ("range_low", F64), ("range_high", F64), ("provider_id", I64),
        ("visit_occurrence_id", I64), ("visit_detail_id", I64),
        ("measurement_source_value", S), ("measurement_source_concept_id", I64),
        ("unit_source_value", S), ("unit_source_concept_id", I32), ("value_source_value", S),
        ("measurement_event_id", I64), ("meas_event_field_concept_id", I32),
    ],
    "observation": [
        ("observation_id", I64), ("person_id", I64), ("observation_concept_id", I64),
        ("observation_date", D), ("observation_datetime", TS),
        ("observation_type_concept_id", I32), ("value_as_number", F64),
        ("value_as_string", S), ("value_as_concept_id", I64), ("qualifier_concept_id", I32),
        ("unit_concept_id", I32), ("provider_id", I64), ("visit_occurrence_id", I64),
        ("visit_detail_id", I64), ("observation_source_value", S),
        ("observation_source_concept_id", I64), ("unit_source_value", S),
        ("qualifier_source_value", S), ("value_source_value", S),
        ("observation_event_id", I64), ("obs_event_field_concept_id", I32),
    ],
    "concept": [
        ("concept_id", I64), ("concept_name", S), ("domain_id", S), ("vocabulary_id", S),
        ("concept_class_id", S), ("standard_concept", S), ("concept_code", S),
        ("valid_start_date", D), ("valid_end_date", D), ("invalid_reason", S),
    ],
}  # fmt: skip
TABLES = tuple(SCHEMAS)

# Reference ranges as a laboratory reports them (the NICE lower limits; labs.yaml units).
RANGES = {
    "pg/mL": (180.0, 900.0), "ng/L": (180.0, 900.0), "pmol/L": (133.0, 664.0),
    "umol/L": (0.0, 0.40), "nmol/L": (0.0, 400.0),
}  # fmt: skip


def _schema(table: str) -> pa.Schema:
    return pa.schema(SCHEMAS[table])


def _table(name: str, columns: dict[str, Any], n: int) -> pa.Table:
    arrays = []
    for col, typ in SCHEMAS[name]:
        value = columns.get(col)
        if value is None:
            arrays.append(pa.nulls(n, typ))
        elif isinstance(value, pa.Array | pa.ChunkedArray):
            arrays.append(value.cast(typ))
        elif np.isscalar(value):
            arrays.append(pa.array(np.full(n, value)).cast(typ))
        else:
            arrays.append(pa.array(value).cast(typ))
    return pa.Table.from_arrays(arrays, schema=_schema(name))


class OmopWriter:
    """Writes blocks of records to one file per table, Parquet or CSV."""

    def __init__(self, out: Path, as_of: dt.date, concepts: Concepts, parquet: bool) -> None:
        self.out, self.concepts, self.parquet = out, concepts, parquet
        self.as_of = np.datetime64(as_of, "D")
        self.next_id = dict.fromkeys(TABLES, 1)
        self._writers: dict[str, Any] = {}
        entries = concepts.entries
        self._codes = pa.array([e.code.code for e in entries])
        self._ext = "parquet" if parquet else "csv"

    def _dates(self, days: np.ndarray) -> pa.Array:
        return pa.array(self.as_of - days.astype("timedelta64[D]"), type=D)

    def _codes_of(self, concept: np.ndarray) -> pa.Array:
        return pc.take(self._codes, pa.array(concept))

    def _ids(self, table: str, n: int) -> np.ndarray:
        first = self.next_id[table]
        self.next_id[table] = first + n
        return np.arange(first, first + n, dtype=np.int64)

    def _write(self, name: str, table: pa.Table) -> None:
        writer = self._writers.get(name)
        if writer is None:
            path = self.out / f"{name}.{self._ext}"
            if self.parquet:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            else:
                writer = pacsv.CSVWriter(path, table.schema)
            self._writers[name] = writer
        writer.write_table(table)

    def write_block(self, pop: Population, rec: Records) -> None:
        n = len(pop)
        birth = self.as_of - pop.birth_day.astype("timedelta64[D]")
        y, m, d = (birth.astype(f"datetime64[{u}]") for u in ("Y", "M", "D"))
        female = pop.female
        self._write("person", _table("person", {
            "person_id": pop.person, "gender_concept_id": np.where(female, FEMALE, MALE),
            "year_of_birth": y.astype(np.int64) + 1970,
            "month_of_birth": m.astype(np.int64) % 12 + 1,
            "day_of_birth": (d - m.astype("datetime64[D]")).astype(np.int64) + 1,
            "birth_datetime": pa.array(birth.astype("datetime64[s]"), type=TS),
            "race_concept_id": 0, "ethnicity_concept_id": 0,
            "care_site_id": practice_of(pop.person),
            "person_source_value": pa.array(pop.person).cast(S),
            "gender_source_value": pa.array(np.where(female, "F", "M")),
        }, n))  # fmt: skip
        self._conditions("condition_occurrence", rec.conditions)
        self._conditions("procedure_occurrence", rec.procedures)
        self._drugs(rec.orders, rec.doses)
        self._measurements(rec.results)
        self._observations(rec.observations)

    def _conditions(self, name: str, rows: Rows) -> None:
        n, cid = len(rows), self.concepts.concept_id(rows.concept)
        p = "condition" if name == "condition_occurrence" else "procedure"
        date_col = f"{p}_start_date" if p == "condition" else "procedure_date"
        self._write(name, _table(name, {
            f"{name}_id": self._ids(name, n), "person_id": rows.person,
            f"{p}_concept_id": cid, date_col: self._dates(rows.day),
            f"{p}_type_concept_id": 0, f"{p}_source_value": self._codes_of(rows.concept),
            f"{p}_source_concept_id": cid,
        }, n))  # fmt: skip

    def _drugs(self, orders: Rows, doses: Rows) -> None:
        n_o, n_d = len(orders), len(doses)
        concept = np.concatenate([orders.concept, doses.concept])
        person = np.concatenate([orders.person, doses.person])
        start = np.concatenate([orders.day, doses.day])
        end = np.concatenate([orders.end_day, doses.day])
        cid = self.concepts.concept_id(concept)
        order = np.argsort(person, kind="stable")
        oral, im = np.full(n_o, "oral", dtype=object), np.full(n_d, "intramuscular", dtype=object)
        self._write("drug_exposure", _table("drug_exposure", {
            "drug_exposure_id": self._ids("drug_exposure", n_o + n_d),
            "person_id": person[order], "drug_concept_id": cid[order],
            "drug_exposure_start_date": self._dates(start[order]),
            "drug_exposure_end_date": self._dates(end[order]), "drug_type_concept_id": 0,
            "quantity": np.concatenate([np.full(n_o, 365.0), np.ones(n_d)])[order],
            "days_supply": np.concatenate([np.full(n_o, 365), np.ones(n_d, int)])[order],
            "drug_source_value": self._codes_of(concept[order]),
            "drug_source_concept_id": cid[order],
            "route_source_value": pa.array(np.concatenate([oral, im])[order], type=S),
            "dose_unit_source_value": pa.array(
                np.concatenate([np.full(n_o, "tablet", dtype=object),
                                np.full(n_d, "mg", dtype=object)])[order], type=S),
            "sig": pa.array(np.concatenate([np.full(n_o, "one a day", dtype=object),
                                            np.full(n_d, "1 mg IM", dtype=object)])[order],
                            type=S),
        }, n_o + n_d))  # fmt: skip

    def _measurements(self, rows: Rows) -> None:
        n, cid = len(rows), self.concepts.concept_id(rows.concept)
        units = np.array(RESULT_UNITS, dtype=object)[rows.unit]
        low = np.array([RANGES[u][0] for u in RESULT_UNITS])[rows.unit]
        high = np.array([RANGES[u][1] for u in RESULT_UNITS])[rows.unit]
        self._write("measurement", _table("measurement", {
            "measurement_id": self._ids("measurement", n), "person_id": rows.person,
            "measurement_concept_id": cid, "measurement_date": self._dates(rows.day),
            "measurement_type_concept_id": 0, "value_as_number": rows.value,
            "value_as_concept_id": 0, "unit_concept_id": 0, "range_low": low,
            "range_high": high, "measurement_source_value": self._codes_of(rows.concept),
            "measurement_source_concept_id": cid, "unit_source_value": pa.array(units, type=S),
            "value_source_value": pa.array(rows.value).cast(S),
        }, n))  # fmt: skip

    def _observations(self, rows: Rows) -> None:
        n, cid = len(rows), self.concepts.concept_id(rows.concept)
        c = self.concepts
        labels = np.full(len(c.entries), "", dtype=object)
        labels[c["diet:vegan"]], labels[c["diet:vegetarian"]] = "vegan", "vegetarian"
        labels[c["nitrous_oxide"]] = "recreational use"
        self._write("observation", _table("observation", {
            "observation_id": self._ids("observation", n), "person_id": rows.person,
            "observation_concept_id": cid, "observation_date": self._dates(rows.day),
            "observation_type_concept_id": 0,
            "value_as_string": pa.array(labels[rows.concept], type=S),
            "value_as_concept_id": cid, "observation_source_value": self._codes_of(rows.concept),
            "observation_source_concept_id": cid,
        }, n))  # fmt: skip

    def close(self) -> None:
        entries = self.concepts.entries
        n = len(entries)
        self._write("concept", _table("concept", {
            "concept_id": np.arange(FIRST_LOCAL_CONCEPT, FIRST_LOCAL_CONCEPT + n),
            "concept_name": [e.code.display for e in entries],
            "domain_id": [e.domain for e in entries],
            "vocabulary_id": [e.vocabulary for e in entries],
            "concept_class_id": [e.concept_class for e in entries],
            "standard_concept": [
                "S" if e.vocabulary in ("SNOMED", "LOINC", "RxNorm") else None for e in entries
            ],
            "concept_code": [e.code.code for e in entries],
            "valid_start_date": pa.array([dt.date(1970, 1, 1)] * n),
            "valid_end_date": pa.array([dt.date(2099, 12, 31)] * n),
        }, n))  # fmt: skip
        sites = np.arange(1, len(PRACTICE_SHARES) + 1)
        self._write("care_site", _table("care_site", {
            "care_site_id": sites, "care_site_name": [f"Practice {i}" for i in sites],
            "place_of_service_concept_id": 0,
        }, len(sites)))  # fmt: skip
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
