"""Errors b12dx raises to its callers.

B12dxError                 base of everything below
├── InputError             a patient record that cannot be assessed (bad JSON, unknown
│                          id, wrong unit, impossible value, date after as_of); carries
│                          one FieldError per problem, each naming the field path and
│                          what is accepted
├── ProfileError           an unknown guideline profile
├── LookupError_           an unknown id asked of the knowledge base (explain, example)
└── KnowledgeError         the shipped knowledge base is inconsistent (a bug, caught by
                           the tests and at load)
"""

from __future__ import annotations

from dataclasses import dataclass


class B12dxError(Exception):
    """Base class for every error b12dx raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One problem in an input record: where, what, and what would be accepted."""

    path: str
    message: str
    accepted: str | None = None

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.accepted:
            text += f" (accepted: {self.accepted})"
        return text


class InputError(B12dxError):
    """The patient record cannot be assessed as given."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("InputError needs at least one FieldError")
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))

    @classmethod
    def single(cls, path: str, message: str, accepted: str | None = None) -> InputError:
        return cls([FieldError(path, message, accepted)])

    def as_dict(self) -> dict[str, object]:
        return {
            "error": "invalid_input",
            "message": str(self),
            "errors": [
                {"path": e.path, "message": e.message, "accepted": e.accepted} for e in self.errors
            ],
        }


class ProfileError(B12dxError):
    """An unknown guideline profile was asked for."""


class LookupError_(B12dxError):
    """An id that the knowledge base does not hold."""


class KnowledgeError(B12dxError):
    """The knowledge base files are inconsistent."""
