"""Reading a population from a FHIR server: a Bulk Data export with SMART Backend
Services authorisation (``export``, ``auth``)."""
