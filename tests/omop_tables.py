"""OMOP tables typed as the CDM 5.4 DDL types them, for the tests that load a folder of
CSVs into a database (PostgreSQL, the Spark catalog) to screen it there."""

from __future__ import annotations


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
