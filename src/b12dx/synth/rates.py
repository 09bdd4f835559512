"""The rates the synthetic screening population is drawn with, each with where it comes from.

``docs/screening-population.md`` lists the same table for readers; a test checks that
every rate here is in that document and that a generated population reproduces them.
A ``basis`` says how far to trust a number:

- ``reference``: stated by a source in ``knowledge/data/sources.yaml`` (cited by id);
- ``published``: a published figure not in the knowledge base (cited in full);
- ``derived``: worked out from a published figure (the working is in ``note``);
- ``assumption``: no published figure was found; a conservative modelling choice.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    id: str
    value: float
    what: str
    basis: str  # reference | published | derived | assumption
    source: str
    note: str = ""


# Age bands of the adult population (years, inclusive) used by every age-specific rate.
AGE_BANDS: tuple[tuple[int, int], ...] = ((18, 29), (30, 44), (45, 59), (60, 74), (75, 95))

_ONS = "ONS mid-2022 population estimates, England and Wales (adults 18+), rounded"
_QOF = "NHS Digital, Quality and Outcomes Framework 2022-23: diabetes register 7.5% of patients 17+"
_SHARMA = "Sharma M et al. BMJ Open 2016;6:e010210 (THIN, UK primary care)"
_OTHMAN = "Othman F et al. Pharmacoepidemiol Drug Saf 2016;25:1079-87 (CPRD)"
_ABRAHAMI = "Abrahami D et al. BMJ Open 2020;10:e041529 (CPRD 1990-2018)"
_ALLEN = "Allen LH. Am J Clin Nutr 2009;89:693S-696S (How common is vitamin B12 deficiency?)"
_KANCHERLA = "Kancherla V et al. J Am Geriatr Soc 2017;65:1061-6"
_BIZZARO = (
    "Bizzaro N, Antico A. Autoimmun Rev 2014;13:565-8; Carmel R. Arch Intern Med 1996;156:1097-100"
)
_ONS_DRUGS = "ONS, Drug misuse in England and Wales, year ending June 2022"
_VEGAN_SOC = (
    "Ipsos MORI for The Vegan Society, 2016 (542,000 vegans, 1.14 million vegetarians aged 15+, GB)"
)

RATES: dict[str, Rate] = {
    r.id: r
    for r in (
        Rate(
            "age_band_share",
            0.0,
            "share of adults in each age band 18-29, 30-44, 45-59, "
            "60-74, 75+: 0.19, 0.25, 0.25, 0.19, 0.12",
            "published",
            _ONS,
        ),
        Rate("female", 0.51, "women among adults", "published", _ONS),
        Rate(
            "vegan",
            0.0105,
            "vegan diet, recorded",
            "published",
            _VEGAN_SOC,
            "542,000 of about 52 million aged 15+ = 1.05%; every vegan is recorded here",
        ),
        Rate(
            "vegetarian",
            0.022,
            "vegetarian diet, recorded",
            "published",
            _VEGAN_SOC,
            "1.14 million of about 52 million = 2.2%",
        ),
        Rate(
            "type2_diabetes",
            0.0675,
            "type 2 diabetes among adults (all ages together)",
            "derived",
            f"{_QOF}; {_SHARMA}",
            "7.5% with diabetes x 90% type 2; by age band 1%, 3%, 6.5%, 12.5%, 15% (older "
            "people more often, as Sharma 2016 found; the gradient is a modelling choice)",
        ),
        Rate(
            "metformin_if_t2d",
            0.70,
            "metformin among people with type 2 diabetes",
            "derived",
            _SHARMA,
            "83.6% of people treated for T2DM had metformin in 2013; not everyone with T2DM "
            "is on a drug, so 70% (conservative)",
        ),
        Rate(
            "neuropathy_if_t2d",
            0.20,
            "recorded diabetic neuropathy among type 2 diabetes",
            "published",
            "Pop-Busui R et al. Diabetes Care 2017;40:136-54 (ADA position "
            "statement: up to 50% develop neuropathy)",
            "a recorded diagnosis is rarer than the disease: 20% (conservative)",
        ),
        Rate(
            "ppi",
            0.077,
            "current proton pump inhibitor use (point prevalence)",
            "published",
            _OTHMAN,
            "7.7% point prevalence in 2014; by age band 3%, 5%, 8%, 12%, 16%",
        ),
        Rate(
            "ppi_mean_days",
            900.0,
            "mean time on a current PPI (exponential, 30 days to 10 years)",
            "derived",
            _OTHMAN,
            "26.7% of new users stay on >= 1 year and 3.9% >= 5 years; current users are "
            "weighted to long courses, so a mean of about 2.5 years",
        ),
        Rate(
            "h2_blocker",
            0.012,
            "current H2 blocker use",
            "published",
            _ABRAHAMI,
            "annual prevalence 1.2-3.4%; the lowest figure, as a point prevalence is lower",
        ),
        Rate(
            "pernicious_anemia",
            0.001,
            "diagnosed pernicious anaemia",
            "published",
            _BIZZARO,
            "0.1% of the population (Bizzaro 2014); 1.9% of over-60s undiagnosed (Carmel "
            "1996) is not a recorded diagnosis; by age band 0, 0.03%, 0.08%, 0.2%, 0.3%",
        ),
        Rate(
            "gastrectomy",
            0.0005,
            "gastrectomy (total or partial), adults 45+",
            "assumption",
            "no population prevalence found",
            "by age band 0, 0, 0.05%, 0.1%, 0.12%",
        ),
        Rate(
            "bariatric_surgery",
            0.003,
            "bariatric surgery",
            "derived",
            "ASMBS estimates: about 200,000-280,000 operations a year in the USA, 2011-2023",
            "about 2.5 million operated adults in the USA (1%); UK rates are far lower, so "
            "0.3%; by age band 0.1%, 0.4%, 0.5%, 0.3%, 0.1%",
        ),
        Rate(
            "ileal_resection",
            0.0003,
            "terminal ileal resection",
            "assumption",
            "no population prevalence found",
        ),
        Rate(
            "nitrous_oxide_18_24",
            0.039,
            "recreational nitrous oxide use recorded, ages 18-24 (none older)",
            "published",
            _ONS_DRUGS,
            "3.9% of 16-24 year olds used it in the last year (8.7% the year before)",
        ),
        Rate(
            "folic_acid",
            0.008,
            "current folic acid prescription",
            "assumption",
            "no population prevalence found",
        ),
        Rate(
            "symptom",
            0.05,
            "a B12-type symptom recorded in the last 12 months "
            "(weakness, tingling, numbness, gait, balance, fatigue, memory)",
            "assumption",
            "no population prevalence found",
            "by age band 3%, 4%, 5%, 7%, 9%; twice as likely with a deficient B12",
        ),
        Rate(
            "b12_deficient_60_plus",
            0.06,
            "B12 deficient (< 133 pmol/L), age 60+",
            "published",
            _ALLEN,
            "~6% of people 60+ have plasma B12 < 148 pmol/L",
        ),
        Rate(
            "b12_deficient_under_60",
            0.03,
            "B12 deficient, under 60",
            "derived",
            _ALLEN,
            "deficiency increases with age; half the 60+ figure",
        ),
        Rate(
            "b12_indeterminate_60_plus",
            0.25,
            "B12 indeterminate (133-258 pmol/L), 60+",
            "derived",
            _ALLEN,
            "~20% marginal (148-221 pmol/L); the NICE band is wider, so 25%",
        ),
        Rate(
            "b12_indeterminate_under_60",
            0.15,
            "B12 indeterminate, under 60",
            "assumption",
            "no figure found; lower than 60+",
        ),
        Rate(
            "deficient_if_metformin",
            2.0,
            "relative risk of a deficient B12 on metformin",
            "published",
            _KANCHERLA,
            "7% deficient on metformin against 3% without",
        ),
        Rate(
            "deficient_if_vegan_or_n2o",
            3.0,
            "relative risk of a deficient B12 for vegans and nitrous oxide users",
            "assumption",
            "no single figure; conservative",
        ),
        Rate(
            "tested_12m",
            0.05,
            "a B12 test in the last 12 months, no reason to test",
            "assumption",
            "no population figure found",
        ),
        Rate(
            "tested_12m_metformin",
            0.30,
            "a B12 test in the last 12 months, on metformin",
            "derived",
            _KANCHERLA,
            "37% of long-term metformin users were ever tested; yearly is fewer: 30%",
        ),
        Rate(
            "tested_12m_symptom",
            0.35,
            "a B12 test in the last 12 months, with a symptom",
            "assumption",
            "no figure found",
        ),
        Rate(
            "older_test",
            0.30,
            "of those not tested in 12 months, a test 1-10 years ago",
            "assumption",
            "no figure found",
        ),
        Rate(
            "mma_after_indeterminate",
            0.60,
            "MMA or active B12 within 3 months after an indeterminate B12 (10% more later)",
            "assumption",
            "no figure found",
        ),
        Rate(
            "treated_within_month",
            0.85,
            "B12 started within a month of a deficient result (5% later, 10% never)",
            "assumption",
            "no figure found",
        ),
        Rate(
            "maintenance_lapsed",
            0.10,
            "people on maintenance injections whose last dose is 4 months to over a year ago",
            "assumption",
            "no figure found",
        ),
        Rate(
            "scenario_share",
            1 / 200,
            "people drawn as one of the fixed screening scenarios "
            "(every 200th person), on top of the rates above",
            "assumption",
            "so that every gap and near miss is present in 5,000 people",
        ),
    )
}

# Every age-specific rate, by AGE_BANDS (the overall figures above are their average).
BY_AGE: dict[str, tuple[float, ...]] = {
    "age_band_share": (0.19, 0.25, 0.25, 0.19, 0.12),
    "type2_diabetes": (0.01, 0.03, 0.065, 0.125, 0.15),
    "ppi": (0.03, 0.05, 0.08, 0.12, 0.16),
    "pernicious_anemia": (0.0, 0.0003, 0.0008, 0.002, 0.003),
    "gastrectomy": (0.0, 0.0, 0.0005, 0.001, 0.0012),
    "bariatric_surgery": (0.001, 0.004, 0.005, 0.003, 0.001),
    "symptom": (0.03, 0.04, 0.05, 0.07, 0.09),
}


def rate(rate_id: str) -> float:
    return RATES[rate_id].value
