"""The assessment engine: pure functions from a patient record and the knowledge base to
an explained assessment. No clock, no I/O: the date comes in as ``as_of``."""

from b12dx.engine.assess import assess

__all__ = ["assess"]
