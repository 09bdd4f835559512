"""Errors b12dx raises to its callers.

B12dxError                 base of everything below
├── InputError             a patient record that cannot be assessed (bad JSON, unknown
│                          id, wrong unit, impossible value, date after as_of); carries
│                          one FieldError per problem, each naming the field path and
│                          what is accepted
├── ProfileError           an unknown guideline profile
├── LookupError_           an unknown id asked of the knowledge base (explain, example)
├── KnowledgeError         the shipped knowledge base is inconsistent (a bug, caught by
│                          the tests and at load)
└── MissingExtra           a command needs an optional part of the package that is not
                           installed (extras.py names the install command)
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


# The most problems an error names in full: a record of 10,000 unknown ids is told about
# its first ones and how many more there are, not answered with an error 200 times its
# own size.
MAX_ERRORS_SHOWN = 20


class InputError(B12dxError):
    """The patient record cannot be assessed as given."""

    def __init__(self, errors: list[FieldError]) -> None:
        if not errors:
            raise ValueError("InputError needs at least one FieldError")
        self.errors = errors
        shown = "; ".join(str(e) for e in errors[:MAX_ERRORS_SHOWN])
        more = len(errors) - MAX_ERRORS_SHOWN
        super().__init__(shown + (f"; and {more} more problems" if more > 0 else ""))

    @classmethod
    def single(cls, path: str, message: str, accepted: str | None = None) -> InputError:
        return cls([FieldError(path, message, accepted)])

    def as_dict(self) -> dict[str, object]:
        """The error as JSON: the first MAX_ERRORS_SHOWN problems, and the count of the
        rest in ``errors_not_shown``."""
        out: dict[str, object] = {
            "error": "invalid_input",
            "message": str(self),
            "errors": [
                {"path": e.path, "message": e.message, "accepted": e.accepted}
                for e in self.errors[:MAX_ERRORS_SHOWN]
            ],
        }
        if len(self.errors) > MAX_ERRORS_SHOWN:
            out["errors_not_shown"] = len(self.errors) - MAX_ERRORS_SHOWN
        return out


class ProfileError(B12dxError):
    """An unknown guideline profile was asked for."""


class LookupError_(B12dxError):
    """An id that the knowledge base does not hold."""


class KnowledgeError(B12dxError):
    """The knowledge base files are inconsistent."""


class MissingExtra(B12dxError):
    """A command needs an extra of the package that is not installed (extras.py)."""
