"""FHIR R4 in and out: Bundles and Bulk exports to patient records, assessments to orders.

read.py     Bundle and Bulk Data (NDJSON) readers, grouped by patient
codes.py    the knowledge base's code tables indexed by (system, code)
record.py   one patient's resources -> a contract record, each resource used or ignored
assess.py   Bundle -> record -> engine -> assessment with the resources it used
out.py      an assessment as FHIR: ServiceRequest, MedicationRequest, RiskAssessment
"""
