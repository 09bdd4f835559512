"""OMOP tables for the screening tests: OHDSI's Eunomia sample, columns typed as the CDM
5.4 DDL types them (to load a folder of CSVs into PostgreSQL or the Spark catalog), and
what a screen wrote, read back for comparison."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path


def cdm_type(column: str) -> str:
    """The CDM 5.4 DDL's type for a column, by OHDSI's naming."""
    if column.endswith("_datetime"):
        return "TIMESTAMP"
    if column.endswith("_date"):
        return "DATE"
    if column in ("value_as_number", "range_low", "range_high", "quantity"):
        return "DOUBLE"
    numbers = {"days_supply", "refills", "min_levels_of_separation", "max_levels_of_separation"}
    keys = ("_concept_id", "_of_birth", "_occurrence_id", "_exposure_id", "_period_id")
    ids = {
        "person_id",
        "concept_id",
        "concept_id_1",
        "concept_id_2",
        "care_site_id",
        "provider_id",
        "location_id",
        "measurement_id",
        "observation_id",
        "visit_detail_id",
    }
    if column.endswith(keys) or column in ids | numbers:
        return "BIGINT"
    return "VARCHAR"  # domain_id, vocabulary_id, a source value, a device's UDI...


EUNOMIA = Path(__file__).parent / "fixtures" / "eunomia-synthea27nj" / "Synthea27Nj_5.4.zip"


def unzip_eunomia(folder: Path) -> Path:
    """OHDSI's Eunomia Synthea27Nj CSVs, as OHDSI ships them (upper-case names), in
    ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(EUNOMIA) as z:
        for name in z.namelist():
            if not name.startswith("__MACOSX/") and name.endswith(".csv"):
                (folder / name).write_bytes(z.read(name))
    return folder


def screened(out: Path) -> dict[str, list[dict[str, str]]]:
    """What a screen wrote to ``out`` that must agree wherever the data came from: the
    gap rows, the counts and the population, each in a fixed order."""
    tables = {}
    for name in ("gaps", "summary", "population"):
        with (out / f"{name}.csv").open() as f:
            tables[name] = sorted(csv.DictReader(f), key=lambda r: sorted(r.items()))
    return tables
