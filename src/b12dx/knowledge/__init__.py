"""The knowledge base: cited data files, loaded into typed models and validated at load."""

from b12dx.knowledge.loader import Knowledge, load_knowledge

__all__ = ["Knowledge", "load_knowledge"]
