"""b12dx: clinical decision support for vitamin B12 deficiency with neurological or
muscular involvement.

    >>> from b12dx import assess
    >>> assessment = assess({"age_years": 67, "symptoms": [{"id": "paresthesia"}],
    ...                      "medications": [{"id": "metformin"}]}, as_of=date(2026, 11, 21))

The public API is what this module exports; a test pins it.
"""

from b12dx.engine.assess import assess
from b12dx.errors import B12dxError, FieldError, InputError, KnowledgeError, ProfileError
from b12dx.knowledge.loader import Knowledge, load_knowledge
from b12dx.models.assessment import Assessment
from b12dx.models.patient import PatientRecord
from b12dx.schema import input_schema, output_schema
from b12dx.version import ENGINE_VERSION, SCHEMA_VERSION

__version__ = ENGINE_VERSION

__all__ = [
    "ENGINE_VERSION",
    "SCHEMA_VERSION",
    "Assessment",
    "B12dxError",
    "FieldError",
    "InputError",
    "Knowledge",
    "KnowledgeError",
    "PatientRecord",
    "ProfileError",
    "__version__",
    "assess",
    "input_schema",
    "load_knowledge",
    "output_schema",
]
