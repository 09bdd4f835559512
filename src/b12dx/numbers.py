"""How a computed number is rounded and written wherever it appears: one rule, here.

A laboratory value converted to its SI unit (the recorded value times the knowledge
base's factor, labs.yaml) is shown in the assessment's ``value_si``, in its text, in the
terminal report, on the charts and in the screening gaps' reasons. Each of them rounds
with this module, so the single-patient engine, DuckDB and Spark print the same digits
for the same result.

The rule:

1. The product is computed in binary floating point, which cannot hold most decimal
   fractions: 250 pg/mL x 0.7378 is exactly 184.45, but the float is 184.44999999999998.
   So the value is first rounded to ``CLEAN_DECIMALS`` (9) decimal places, far below any
   laboratory's precision and far above the float's error at the magnitudes of
   ``plausible_si``, which gives back the exact decimal product.
2. That decimal is rounded half up (half away from zero: every value here is positive)
   to the test's ``si_decimals``: 184.45 -> 184.5, as a person doing the sum on paper
   would round it. Half-up rather than half-to-even because it is what SQL's ROUND does
   on a DECIMAL in DuckDB and in Spark, so the rule can be written once for every
   backend without a user-defined function.
3. It is written in plain positional notation without trailing zeros ("184.5", "184",
   "0.35"): never an exponent.

``round_si`` and ``format_si`` are the rule in Python; ``format_si_expr`` writes the same
rule as an Ibis expression (DECIMAL casts, ROUND, a regular expression), which the
screening backends compile to SQL. tests/test_numbers.py checks the three agree on
half-way cases in every unit of every test.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# Places kept when undoing the binary error of a product (step 1 above).
# A month of a course or of a duration, in days: the mean Gregorian month, so twelve of
# them are a year. FHIR reading, the follow-up record and screening count months by it.
DAYS_PER_MONTH = 365.25 / 12
CLEAN_DECIMALS = 9
# DECIMAL precision used in SQL: 9 places after the point leaves 9 before it, more than
# any plausible_si bound (labs.yaml) needs.
_SQL_PRECISION = 18


def _quantum(decimals: int) -> Decimal:
    return Decimal(1).scaleb(-decimals)


def round_si(value: float, decimals: int) -> Decimal:
    """``value`` rounded by the rule: cleaned to 9 places, then half up to ``decimals``."""
    clean = Decimal(repr(float(value))).quantize(_quantum(CLEAN_DECIMALS), ROUND_HALF_UP)
    return clean.quantize(_quantum(decimals), ROUND_HALF_UP)


def rounded_float(value: float, decimals: int) -> float:
    """The rounded value as a float, for JSON (``value_si``)."""
    return float(round_si(value, decimals))


def format_si(value: float, decimals: int) -> str:
    """The rounded value as text: positional, trailing zeros dropped ("184.5", "184")."""
    text = f"{round_si(value, decimals):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_si_expr(value: Any, decimals: int) -> Any:
    """The same rule as an Ibis expression over a float column (DuckDB, Spark)."""
    clean = value.cast(f"decimal({_SQL_PRECISION}, {CLEAN_DECIMALS})")
    rounded = clean.round(decimals).cast(f"decimal({_SQL_PRECISION}, {decimals})")
    text = rounded.cast("string")
    if decimals == 0:
        return text
    # "184.50" -> "184.5", "184.0" -> "184": only the fraction has trailing zeros here.
    return text.re_replace(r"\.?0+$", "")
