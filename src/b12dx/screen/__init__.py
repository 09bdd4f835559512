"""Population screening: care gaps across all the patients of a health system.

Every input (FHIR Bulk NDJSON, OMOP CDM 5.4 CSV or Parquet) is first loaded into the
normalized screening tables (``model``); the gap rules (``rules``) are Ibis expressions
over those tables, written once and executed by DuckDB (the default) or PySpark
(``run``). Thresholds come from the knowledge base and profile, where the engine reads
them. ``report`` writes the summary.

Modules: model (table schemas), lookups (code and unit lookup tables from the knowledge
base), load_omop, load_fhir, rules, run, report.
"""
