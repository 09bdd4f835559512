"""The options the follow-up commands share (``b12dx patient``, ``b12dx record``, ``due``,
``backup``, ``restore``), typed once."""

from __future__ import annotations

from typing import Annotated

import typer

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (sqlite:///PATH, postgresql://...) or a SQLite file; default "
        "B12DX_DATABASE_URL, else b12dx.sqlite3 in the user data directory.",
    ),
]
PracticeOption = Annotated[
    str | None,
    typer.Option("--practice", help="Work in this practice (its name); default the local one."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
AsOfOption = Annotated[
    str | None, typer.Option("--as-of", help="As of this date (YYYY-MM-DD); default today.")
]
ProfileOption = Annotated[
    str | None,
    typer.Option("--profile", help="Guideline profile: nice-ng239 (default), bsh-2014, us-label."),
]
PatientArg = Annotated[str, typer.Argument(metavar="ID", help="The patient's id.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite the file if it exists.")]
DateOption = Annotated[str, typer.Option("--date", help="The day it happened (YYYY-MM-DD).")]
