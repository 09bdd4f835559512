"""Synthetic populations for trying and benchmarking population screening (``b12dx
synth``): people drawn at documented rates (``rates``, ``population``), their dated
records (``events``), written as OMOP CDM tables (``omop``) or a FHIR Bulk export
(``fhir``) by ``generate``. Test and benchmark data, never patient data; the rates and
their sources are in docs/screening-population.md."""
