"""``b12dx record``: what happened to a followed patient, a lab result, a dose given or a
symptom rating, each checked as the engine would check it before it is stored."""

from __future__ import annotations

from typing import Annotated

import typer

from b12dx.cli import followup_work as base
from b12dx.cli.followup_options import (
    DateOption,
    DbOption,
    PatientArg,
    PracticeOption,
)
from b12dx.errors import B12dxError
from b12dx.knowledge.wording import unit_words

record_app = typer.Typer(
    help="Record what happened to a patient: a lab result, a dose given, a symptom rating.",
    no_args_is_help=True,
)

LAB_OPTIONS = {
    "test": "--test",
    "lab": "--test",
    "value": "--value",
    "unit": "--unit",
    "date": "--date",
    "reference_low": "--reference-low",
    "reference_high": "--reference-high",
}
DOSE_OPTIONS = {
    "date": "--date",
    "drug": "--drug",
    "dose": "--dose",
    "route": "--route",
    "given_by": "--given-by",
    "batch": "--batch",
    "site": "--site",
}
RATING_OPTIONS = {"date": "--date", "symptom": "--symptom", "rating": "--rating"}


@record_app.command("lab")
def record_lab(
    patient_id: PatientArg,
    test: Annotated[str, typer.Option("--test", help="Test id, e.g. total_b12, mma, mcv.")],
    value: Annotated[str, typer.Option("--value", help="A number, or positive / negative.")],
    date: DateOption,
    unit: Annotated[
        str | None, typer.Option("--unit", help="The result's unit, e.g. pg/mL, pmol/L.")
    ] = None,
    reference_low: Annotated[
        float | None, typer.Option("--reference-low", help="The lab's lower limit (same unit).")
    ] = None,
    reference_high: Annotated[
        float | None, typer.Option("--reference-high", help="The lab's upper limit (same unit).")
    ] = None,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Record a lab result (checked as the engine checks it: test, unit, plausible value)."""
    from b12dx.store import entries

    day = base.required_date(date, "--date")
    with base.patient_work(db, practice, patient_id, LAB_OPTIONS) as (c, p):
        entry = entries.add_lab(
            c.session,
            c.kb,
            c.actor,
            c.now,
            p,
            test=test,
            value=value,
            unit=unit,
            taken_on=day,
            reference_low=reference_low,
            reference_high=reference_high,
        )
        shown = (
            f"{entry.value_number:g} {unit_words(entry.unit)}".strip()
            if entry.value_number is not None
            else entry.value_text
        )
        line = f"Recorded for {p.id} ({p.name}): {c.kb.labs[test].name} {shown} on {day}."
    base.out(line)


@record_app.command("dose")
def record_dose(
    patient_id: PatientArg,
    date: DateOption,
    drug: Annotated[
        str, typer.Option("--drug", help="hydroxocobalamin, cyanocobalamin or methylcobalamin.")
    ],
    dose: Annotated[
        str, typer.Option("--dose", help='The amount, e.g. "1 mg", "1000 micrograms".')
    ],
    route: Annotated[str, typer.Option("--route", help="im, oral, sc, iv, sublingual or nasal.")],
    given_by: Annotated[
        str | None, typer.Option("--given-by", help="Who gave it; default the login.")
    ] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="The batch (lot) number.")] = None,
    site: Annotated[
        str | None, typer.Option("--site", help='The injection site, e.g. "left deltoid".')
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Record it although it does not fit b12dx's regimens (an amount none gives, "
            "or sooner after another dose than any gives), once checked.",
        ),
    ] = False,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Record a dose of B12 given, and say when the next one is due.

    A dose that does not fit the knowledge base's regimens for the drug and route is
    refused, saying why, unless --force."""
    from b12dx.cli.followup_view import next_dose
    from b12dx.store import entries, snapshots

    day = base.required_date(date, "--date")
    with base.patient_work(db, practice, patient_id, DOSE_OPTIONS) as (c, p):
        try:
            entry = entries.add_dose(
                c.session,
                c.actor,
                c.now,
                p,
                given_on=day,
                drug=drug,
                dose=dose,
                route=route,
                given_by=given_by,
                kb=c.kb,
                force=force,
                batch=batch,
                site=site,
            )
        except entries.UnusualDose as exc:
            raise exc.confirm_with("--force") from None
        line = (
            f"Recorded for {p.id} ({p.name}): {drug} {entry.dose_mg:g} mg {route.upper()} on "
            f"{day}, given by {entry.given_by}."
        )
        try:  # the dose is kept even when the record cannot be assessed today
            a = snapshots.current(c.kb, p, c.today).assessment
            after = next_dose(a, max(d.given_on for d in p.doses))
        except B12dxError as exc:
            after = f"When the next dose is due could not be worked out: {exc}"
    base.out(line)
    base.out(after)


@record_app.command("symptom")
def record_symptom(
    patient_id: PatientArg,
    symptom: Annotated[
        str, typer.Option("--symptom", help="Symptom id (b12dx knowledge symptoms).")
    ],
    rating: Annotated[str, typer.Option("--rating", help="none, mild, moderate or severe.")],
    date: DateOption,
    db: DbOption = None,
    practice: PracticeOption = None,
) -> None:
    """Record how a symptom is on a day (none records that it has gone)."""
    from b12dx.store import entries

    day = base.required_date(date, "--date")
    with base.patient_work(db, practice, patient_id, RATING_OPTIONS) as (c, p):
        entries.add_rating(
            c.session, c.kb, c.actor, c.now, p, symptom=symptom, rating=rating, rated_on=day
        )
        line = f"Recorded for {p.id} ({p.name}): {c.kb.symptoms[symptom].name} {rating} on {day}."
    base.out(line)
