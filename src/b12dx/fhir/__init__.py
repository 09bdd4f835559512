"""FHIR R4 in and out: Bundles and Bulk exports to patient records, assessments to orders.

The reading layer every FHIR reader uses (this one-patient record, the follow-up store's
Bundle import, the population loader):

read.py       Bundle and Bulk Data (NDJSON) readers, references, whose record it is
validate.py   a resource checked against FHIR R4 and named in reports; NotUsed
values.py     dates as written, codings, quantities, how long an order runs
results.py    a lab result's value: a number in a unit of the test, positive/negative
findings.py   a finding on a date: a pregnancy still current, the latest diet
codes.py      the knowledge base's code tables indexed by (system, code)
medicines.py  which medicine a resource names; courses of orders; doses given

And on top of it:

record.py     one patient's resources -> a contract record, each resource used or ignored
assess.py     Bundle -> record -> engine -> assessment with the resources it used
out.py        an assessment as FHIR: ServiceRequest, MedicationRequest, RiskAssessment
"""
