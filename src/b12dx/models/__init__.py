"""Typed models at the boundaries: the patient record (input), the assessment (output) and
the knowledge base."""
