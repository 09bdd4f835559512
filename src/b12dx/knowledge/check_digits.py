"""Check digits of the code systems that have them, so a mistyped code is caught when the
knowledge base loads, before it reaches a health record.

- SNOMED CT identifiers (SCTIDs) end in a Verhoeff check digit computed over all the
  digits before it; the two digits before the check digit are the partition identifier,
  which for a concept is 00 (an International concept) or 10 (a concept of an extension,
  such as the US or UK edition). SNOMED CT Technical Implementation Guide, 6.7 and 6.8.
- LOINC codes are a number, a hyphen and a mod 10 check digit over the number: counting
  from the right, the digits in odd positions are doubled (a two-digit product counts as
  the sum of its digits), everything is added up, and the check digit takes the total to
  the next multiple of ten. LOINC Users' Guide, "Calculating Mod 10 check digits".
"""

from __future__ import annotations

# Verhoeff's dihedral group D5: multiplication table and the position permutation.
_D5 = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
    (1, 2, 3, 4, 0, 6, 7, 8, 9, 5),
    (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7),
    (4, 0, 1, 2, 3, 9, 5, 6, 7, 8),
    (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2),
    (7, 6, 5, 9, 8, 2, 1, 0, 4, 3),
    (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_P1 = (1, 5, 7, 6, 2, 8, 3, 0, 9, 4)


def _permutations() -> tuple[tuple[int, ...], ...]:
    # p_0 is the identity and p_i = p_1 applied i times (p_8 = p_0).
    rows = [tuple(range(10))]
    for _ in range(7):
        rows.append(tuple(_P1[d] for d in rows[-1]))
    return tuple(rows)


_P = _permutations()
SNOMED_CONCEPT_PARTITIONS = ("00", "10")


def verhoeff_valid(digits: str) -> bool:
    """True when the last digit of ``digits`` is the Verhoeff check digit of the rest."""
    check = 0
    for position, char in enumerate(reversed(digits)):
        check = _D5[check][_P[position % 8][int(char)]]
    return check == 0


def snomed_problem(code: str) -> str | None:
    """Why ``code`` cannot be a SNOMED CT concept id, or None when it can."""
    if not code.isascii() or not code.isdigit() or not 6 <= len(code) <= 18 or code[0] == "0":
        return "a SNOMED CT id is 6 to 18 digits, not starting with 0"
    if not verhoeff_valid(code):
        return "its Verhoeff check digit is wrong"
    if code[-3:-1] not in SNOMED_CONCEPT_PARTITIONS:
        return f"its partition {code[-3:-1]} is not a concept's (00 or 10)"
    return None


def loinc_check_digit(number: str) -> int:
    """The mod 10 check digit of a LOINC code's number (the part before the hyphen)."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10


def loinc_problem(code: str) -> str | None:
    """Why ``code`` cannot be a LOINC code, or None when it can."""
    number, hyphen, check = code.partition("-")
    if (
        not hyphen
        or not number.isascii()
        or not number.isdigit()
        or not 1 <= len(number) <= 7
        or len(check) != 1
        or not check.isdigit()
    ):
        return "a LOINC code is digits, a hyphen and one check digit"
    expected = loinc_check_digit(number)
    if int(check) != expected:
        return f"its check digit should be {expected}"
    return None
