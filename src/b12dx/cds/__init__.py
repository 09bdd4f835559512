"""CDS Hooks 2.0.1 service: b12dx in the electronic health record.

services.py  discovery and prefetch templates (from the knowledge base)
fetch.py     prefetch first, the FHIR server for the rest, 412 when neither can
cards.py     an assessment as cards (patient-view)
orders.py    checks on drafted medicine orders (order-select, order-sign)
feedback.py  what clinicians did with the cards, stored once each
auth.py      the Bearer JWT that authenticates the calling EHR
routes.py    the HTTP endpoints
"""
