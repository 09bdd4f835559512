"""``b12dx practice ...`` and ``b12dx user ...``: the practices and the people who sign in
to the follow-up pages when the server is reached beyond this machine.

Passwords are read from a hidden prompt (asked twice) or, for scripts, the first line of
standard input (``--password-stdin``); never from the command line, where other users of
the machine could read them in the process list.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from b12dx.cli import followup_work as base
from b12dx.cli.followup_options import DbOption, JsonOption
from b12dx.cli.io import show
from b12dx.errors import InputError

if TYPE_CHECKING:
    from b12dx.store.audit import Actor

practice_app = typer.Typer(
    rich_markup_mode=None, help="Practices: each sees only its own patients.", no_args_is_help=True
)
user_app = typer.Typer(
    rich_markup_mode=None,
    help="Users who sign in to the follow-up pages (argon2 password hashes, lockout after "
    "repeated failures).",
    no_args_is_help=True,
)

PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]


def _actor() -> Actor:
    """Who changes accounts: the login on this machine, in no practice."""
    from b12dx.store.audit import Actor

    return Actor(base.login())


@practice_app.command("add")
def practice_add(
    name: Annotated[str, typer.Argument(help="The practice's name, e.g. 'Riverside Surgery'.")],
    db: DbOption = None,
) -> None:
    """Add a practice."""
    from b12dx.store import users

    with base.database(db) as database, database.transaction() as s:
        p = users.create_practice(s, _actor(), base.now(), name)
        sys.stdout.write(f"practice {p.id}: {p.name}\n")


@practice_app.command("list")
def practice_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """List the practices with their number of users and patients."""
    from sqlalchemy import func, select

    from b12dx.store import users
    from b12dx.store.tables import Patient, User

    with base.database(db) as database, database.transaction() as s:
        counts = {
            what: dict(
                s.execute(select(model.practice_id, func.count()).group_by(model.practice_id)).all()
            )
            for what, model in (("users", User), ("patients", Patient))
        }
        rows = [
            {
                "id": p.id,
                "name": p.name,
                "users": counts["users"].get(p.id, 0),
                "patients": counts["patients"].get(p.id, 0),
            }
            for p in users.practices(s)
        ]
    if json_out:
        base.out(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} practices", title_justify="left")
    for col in ("ID", "Users", "Patients"):
        table.add_column(col, justify="right")
    table.add_column("Name")
    for r in rows:
        table.add_row(str(r["id"]), str(r["users"]), str(r["patients"]), str(r["name"]))
    show(base.console(), table, "ID")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Password again: ")
    if first != second:
        raise InputError.single("password", "the two passwords differ")
    return first


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Letters, digits and . _ - @ (any case).")],
    practice: Annotated[str, typer.Option("--practice", help="The practice's name.")],
    password_stdin: PasswordStdinOption = False,
    db: DbOption = None,
) -> None:
    """Add a user to a practice (the password is asked twice, hidden)."""
    from b12dx.store import users

    with base.database(db) as database:
        with database.transaction() as s:
            found = users.practice_named(s, practice)  # before asking for a password
        password = _read_password(password_stdin)
        users.check_password(password)
        with database.transaction() as s:
            u = users.create_user(
                s,
                _actor(),
                base.now(),
                username=username,
                password=password,
                practice_id=found.id,
            )
            sys.stdout.write(f"user {u.username} added to {found.name}\n")


@user_app.command("list")
def user_list(db: DbOption = None, json_out: JsonOption = False) -> None:
    """List the users: practice, and whether each is locked out or deactivated."""
    from b12dx.store import users

    now = base.now()
    with base.database(db) as database, database.transaction() as s:
        names = {p.id: p.name for p in users.practices(s)}
        rows = []
        for u in users.users(s):
            locked = u.active and users.is_locked(u, now) and u.locked_until is not None
            until = users.utc(u.locked_until).astimezone() if locked and u.locked_until else None
            rows.append(
                {
                    "username": u.username,
                    "practice": names.get(u.practice_id, "?"),
                    "active": u.active,
                    "locked_until": until.isoformat(timespec="minutes") if until else None,
                    "failed_logins": u.failed_logins,
                }
            )
    if json_out:
        base.out(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} users", title_justify="left")
    for col in ("Username", "State", "Practice"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["username"]), _state(r), str(r["practice"]))
    show(base.console(), table, "Username")


def _state(row: dict[str, Any]) -> str:
    if not row["active"]:
        return "deactivated"
    if row["locked_until"]:
        until = dt.datetime.fromisoformat(row["locked_until"]).strftime("%Y-%m-%d %H:%M")
        return f"locked until {until}"
    failed = row["failed_logins"]
    return "active" + (f" ({failed} failed)" if failed else "")


@user_app.command("unlock")
def user_unlock(
    username: Annotated[str, typer.Argument(help="The user to unlock.")],
    db: DbOption = None,
) -> None:
    """Lift a lockout after repeated failed sign-ins now, instead of waiting for it to end."""
    from b12dx.store import users

    with base.database(db) as database, database.transaction() as s:
        u = users.unlock(s, _actor(), base.now(), username)
        sys.stdout.write(f"user {u.username} unlocked\n")


@user_app.command("password")
def user_password(
    username: Annotated[str, typer.Argument(help="The user whose password to set.")],
    password_stdin: PasswordStdinOption = False,
    db: DbOption = None,
) -> None:
    """Set a new password (asked twice, hidden); the user's signed-in sessions end."""
    from b12dx.store import users

    with base.database(db) as database:
        with database.transaction() as s:
            users.user_named(s, username)  # before asking for a password
        password = _read_password(password_stdin)
        with database.transaction() as s:
            u = users.set_password(s, _actor(), base.now(), username, password)
            sys.stdout.write(f"password of {u.username} changed; signed out everywhere\n")


@user_app.command("deactivate")
def user_deactivate(
    username: Annotated[str, typer.Argument(help="The user who may no longer sign in.")],
    db: DbOption = None,
) -> None:
    """Stop a user signing in (someone who has left); their sessions end. Kept for the
    audit log, which names them."""
    _set_active(username, False, db)


@user_app.command("activate")
def user_activate(
    username: Annotated[str, typer.Argument(help="The user who may sign in again.")],
    db: DbOption = None,
) -> None:
    """Let a deactivated user sign in again."""
    _set_active(username, True, db)


def _set_active(username: str, active: bool, db: str | None) -> None:
    from b12dx.store import users

    with base.database(db) as database, database.transaction() as s:
        u = users.set_active(s, _actor(), base.now(), username, active)
        state = "activated" if active else "deactivated; signed out everywhere"
        sys.stdout.write(f"user {u.username} {state}\n")
