"""Who a patient is, beyond a name: an NHS number (checked by its modulus-11 check
digit) or a local record number, and the patients of a practice a new one may duplicate.

A likely duplicate is a patient of the same practice with the same identifier (always
refused: it is the same person) or with the same name and birth date (refused unless the
caller says it is a namesake: two people may share both, but a second record of one
person splits their doses between two timelines)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from b12dx.errors import FieldError, InputError
from b12dx.store.audit import Actor
from b12dx.store.tables import Patient

NHS_ACCEPTED = "10 digits with a valid check digit (spaces allowed), e.g. 943 476 5919"
LOCAL_ACCEPTED = "1 to 40 letters, digits, hyphens, slashes or dots"
_LOCAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./-]{0,39}$")


def nhs_check_digit_ok(digits: str) -> bool:
    """The NHS number's modulus-11 check (NHS Data Dictionary, "NHS Number"): the first
    nine digits weighted 10 down to 2, 11 minus the sum's remainder by 11 is the tenth
    digit (11 counts as 0; 10 means no valid number has these nine digits)."""
    if not (len(digits) == 10 and digits.isascii() and digits.isdigit()):
        return False
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def nhs_number(raw: str | None, field: str = "nhs_number") -> str | None:
    """The NHS number as 10 digits, None when not given, or an InputError naming ``field``."""
    text = (raw or "").strip()
    if not text:
        return None
    digits = re.sub(r"[\s-]", "", text)
    if not (len(digits) == 10 and digits.isascii() and digits.isdigit()):
        raise InputError.single(field, f"{text!r} is not an NHS number", NHS_ACCEPTED)
    if not nhs_check_digit_ok(digits):
        raise InputError.single(
            field, f"{text!r} fails the NHS number check digit (a digit mistyped?)", NHS_ACCEPTED
        )
    return digits


def local_number(raw: str | None, field: str = "local_number") -> str | None:
    """A local record number as the practice writes it (upper case, no spaces), or None."""
    text = "".join((raw or "").split()).upper()
    if not text:
        return None
    if not _LOCAL.match(text):
        raise InputError.single(field, f"{raw!r} is not a record number", LOCAL_ACCEPTED)
    return text


def show_nhs(digits: str | None) -> str:
    """An NHS number as people read it: 3, 3 and 4 digits."""
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}" if digits else ""


def same_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


@dataclass(frozen=True)
class Match:
    patient_id: str
    name: str
    birth_date: dt.date
    why: str  # "the same NHS number" / "the same name and date of birth"


class LikelyDuplicate(InputError):
    """A patient who may be the one being added. ``matches`` link to them; ``namesake``:
    only the name and birth date agree, so a deliberate "add anyway" may go on."""

    def __init__(self, matches: Sequence[Match], namesake: bool) -> None:
        self.matches = list(matches)
        self.namesake = namesake
        field = (
            "name" if namesake else ("nhs_number" if "NHS" in matches[0].why else "local_number")
        )
        super().__init__(
            [
                FieldError(
                    field,
                    f"{m.name}, born {m.birth_date}, is already a patient here (id "
                    f"{m.patient_id}): {m.why}",
                    "open that record instead"
                    + (
                        "; or confirm this is a different person with the same name"
                        if namesake
                        else ""
                    ),
                )
                for m in self.matches
            ]
        )


def refuse_duplicates(
    session: Session,
    actor: Actor,
    *,
    name: str,
    birth_date: dt.date,
    nhs: str | None,
    local: str | None,
    namesake_ok: bool,
) -> None:
    """Raise LikelyDuplicate for a patient of the actor's practice with the same NHS or
    local number, or (unless ``namesake_ok``) the same name and birth date whose
    identifiers do not tell the two apart."""
    same_id = [
        c
        for c in (
            Patient.nhs_number == nhs if nhs else None,
            Patient.local_number == local if local else None,
        )
        if c is not None
    ]
    q = select(Patient).where(
        Patient.practice_id == actor.practice_id,
        or_(Patient.birth_date == birth_date, *same_id),
    )
    by_id: list[Match] = []
    by_name: list[Match] = []
    for p in session.scalars(q.order_by(Patient.created_at, Patient.id)):
        if nhs and p.nhs_number == nhs:
            by_id.append(Match(p.id, p.name, p.birth_date, "the same NHS number"))
        elif local and p.local_number == local:
            by_id.append(Match(p.id, p.name, p.birth_date, "the same local record number"))
        elif p.birth_date == birth_date and same_name(p.name, name):
            told_apart = (nhs and p.nhs_number and nhs != p.nhs_number) or (
                local and p.local_number and local != p.local_number
            )
            if not told_apart:
                by_name.append(Match(p.id, p.name, p.birth_date, "the same name and date of birth"))
    if by_id:
        raise LikelyDuplicate(by_id, namesake=False)
    if by_name and not namesake_ok:
        raise LikelyDuplicate(by_name, namesake=True)
