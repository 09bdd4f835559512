"""Care sites compared fairly: each site's rate of a gap against the rate of all sites,
with the control limits a site of its size would stay within by chance (a funnel plot).

A small practice's rate swings widely by chance; ranking practices by raw rate puts the
smallest at both ends of the table. The funnel plot (Spiegelhalter, Stat Med 2005;
24:1185-1202) draws, for every size, the range the overall rate allows at 95% and 99.8%
(about 2 and 3 standard errors, binomial normal approximation): a site outside the 99.8%
limits differs by more than chance would explain, one between them is worth a look.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

Z_95 = 1.959964  # two-sided 95%
Z_998 = 3.090232  # two-sided 99.8%


@dataclass(frozen=True)
class SiteRate:
    site: str
    people: int  # screened at the site
    flagged: int  # with the gap
    per_1000: float
    # "above 99.8%", "above 95%", "below 95%", "below 99.8%" or "" (within both limits)
    outside: str


def limits(rate: float, people: int, z: float) -> tuple[float, float]:
    """The range of rates (per 1) a site of ``people`` stays within by chance at ``z``."""
    if people <= 0:
        return 0.0, 1.0
    half = z * math.sqrt(rate * (1 - rate) / people)
    return max(0.0, rate - half), min(1.0, rate + half)


def _outside(rate: float, site_rate: float, people: int) -> str:
    for z, name in ((Z_998, "99.8%"), (Z_95, "95%")):
        low, high = limits(rate, people, z)
        if site_rate > high:
            return f"above {name}"
        if site_rate < low:
            return f"below {name}"
    return ""


def overall_rate(people: dict[str, int], flagged: Counter[str]) -> float:
    """The rate (per 1) over every site together: the funnel's centre line."""
    total = sum(people.values())
    return sum(flagged[s] for s in people) / total if total else 0.0


def site_rates(people: dict[str, int], flagged: Counter[str]) -> list[SiteRate]:
    """Each site's rate and where it falls against the funnel, largest site first."""
    rate = overall_rate(people, flagged)
    out = []
    for site, n in sorted(people.items(), key=lambda kv: (-kv[1], kv[0])):
        k = flagged[site]
        out.append(
            SiteRate(site, n, k, 1000 * k / n if n else 0.0, _outside(rate, k / n, n) if n else "")
        )
    return out
