"""OMOP CDM 5.4 tables (CSV or Parquet) -> screening tables.

Not written yet: the plan is set-wise DuckDB/Ibis joins of each clinical table to
``concept`` (vocabulary_id + concept_code, through screening.yaml omop_vocabularies) and
then to the knowledge base's code table (``b12dx.screen.lookups.code_table``; ICD-10 and
ATC match by prefix, the longest match winning, as ``CodeIndex.lookup`` walks up the
hierarchy), falling back to the ``*_source_value`` codes when there is no concept table;
units joined to ``lookups.unit_table`` for the SI factor and family.
"""

from __future__ import annotations

from pathlib import Path

from b12dx.errors import FieldError, InputError
from b12dx.knowledge.loader import Knowledge
from b12dx.screen.model import ScreeningTables


def load_omop(kb: Knowledge, source: Path, work: Path) -> ScreeningTables:
    raise InputError(
        [
            FieldError(
                "INPUT",
                f"{source} holds OMOP CDM tables, which b12dx screen cannot read yet",
                "a FHIR Bulk Data export (*.ndjson)",
            )
        ]
    )
