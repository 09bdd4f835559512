"""``b12dx practice ...`` and ``b12dx user ...``: the practices and the people who sign in
to the follow-up pages when the server is reached beyond this machine.

Passwords are read from a hidden prompt (asked twice) or, for scripts, the first line of
standard input (``--password-stdin``); never from the command line, where other users of
the machine could read them in the process list.
"""

from __future__ import annotations

import datetime as dt
import getpass
import sys
from typing import Annotated

import typer

from b12dx.errors import InputError

practice_app = typer.Typer(help="Practices: each sees only its own patients.", no_args_is_help=True)
user_app = typer.Typer(
    help="Users who sign in to the follow-up pages (argon2 password hashes, lockout after "
    "repeated failures).",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (sqlite:///PATH, postgresql://...) or a SQLite file; default "
        "B12DX_DATABASE_URL, else b12dx.sqlite3 in the user data directory.",
    ),
]


def _actor_name() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@practice_app.command("add")
def practice_add(
    name: Annotated[str, typer.Argument(help="The practice's name, e.g. 'Riverside Surgery'.")],
    db: DbOption = None,
) -> None:
    """Add a practice."""
    from b12dx.cli.followup_work import open_announced
    from b12dx.store import users
    from b12dx.store.audit import Actor

    database = open_announced(db)
    try:
        with database.transaction() as s:
            p = users.create_practice(s, Actor(_actor_name()), _now(), name)
            sys.stdout.write(f"practice {p.id}: {p.name}\n")
    finally:
        database.dispose()


@practice_app.command("list")
def practice_list(db: DbOption = None) -> None:
    """List the practices with their number of users and patients."""
    from sqlalchemy import func, select

    from b12dx.cli.followup_work import open_announced
    from b12dx.store import users
    from b12dx.store.tables import Patient, User

    database = open_announced(db)
    try:
        with database.transaction() as s:
            people = {
                pid: n
                for pid, n in s.execute(
                    select(User.practice_id, func.count()).group_by(User.practice_id)
                ).all()
            }
            patients = {
                pid: n
                for pid, n in s.execute(
                    select(Patient.practice_id, func.count()).group_by(Patient.practice_id)
                ).all()
            }
            sys.stdout.write(f"{'id':>4}  {'users':>5}  {'patients':>8}  name\n")
            for p in users.practices(s):
                sys.stdout.write(
                    f"{p.id:>4}  {people.get(p.id, 0):>5}  {patients.get(p.id, 0):>8}  {p.name}\n"
                )
    finally:
        database.dispose()


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
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of standard input."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Add a user to a practice (the password is asked twice, hidden)."""
    from b12dx.cli.followup_work import open_announced
    from b12dx.store import users
    from b12dx.store.audit import Actor

    database = open_announced(db)
    try:
        with database.transaction() as s:
            found = users.practice_named(s, practice)  # before asking for a password
        password = _read_password(password_stdin)
        users.check_password(password)
        with database.transaction() as s:
            u = users.create_user(
                s,
                Actor(_actor_name()),
                _now(),
                username=username,
                password=password,
                practice_id=found.id,
            )
            sys.stdout.write(f"user {u.username} added to {found.name}\n")
    finally:
        database.dispose()


@user_app.command("list")
def user_list(db: DbOption = None) -> None:
    """List the users: practice, and whether each is locked out or deactivated."""
    from b12dx.cli.followup_work import open_announced
    from b12dx.store import users

    database = open_announced(db)
    now = _now()
    try:
        with database.transaction() as s:
            names = {p.id: p.name for p in users.practices(s)}
            sys.stdout.write(f"{'username':24}  {'state':28}  practice\n")
            for u in users.users(s):
                if not u.active:
                    state = "deactivated"
                elif users.is_locked(u, now) and u.locked_until is not None:
                    until = users.utc(u.locked_until).astimezone().strftime("%Y-%m-%d %H:%M")
                    state = f"locked until {until}"
                else:
                    state = "active" + (f" ({u.failed_logins} failed)" if u.failed_logins else "")
                sys.stdout.write(f"{u.username:24}  {state:28}  {names.get(u.practice_id, '?')}\n")
    finally:
        database.dispose()


@user_app.command("unlock")
def user_unlock(
    username: Annotated[str, typer.Argument(help="The user to unlock.")],
    db: DbOption = None,
) -> None:
    """Lift a lockout after repeated failed sign-ins now, instead of waiting for it to end."""
    from b12dx.cli.followup_work import open_announced
    from b12dx.store import users
    from b12dx.store.audit import Actor

    database = open_announced(db)
    try:
        with database.transaction() as s:
            u = users.unlock(s, Actor(_actor_name()), _now(), username)
            sys.stdout.write(f"user {u.username} unlocked\n")
    finally:
        database.dispose()


@user_app.command("password")
def user_password(
    username: Annotated[str, typer.Argument(help="The user whose password to set.")],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from the first line of standard input."
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Set a new password (asked twice, hidden); the user's signed-in sessions end."""
    from b12dx.cli.followup_work import open_announced
    from b12dx.store import users
    from b12dx.store.audit import Actor

    database = open_announced(db)
    try:
        with database.transaction() as s:
            users.user_named(s, username)  # before asking for a password
        password = _read_password(password_stdin)
        with database.transaction() as s:
            u = users.set_password(s, Actor(_actor_name()), _now(), username, password)
            sys.stdout.write(f"password of {u.username} changed; signed out everywhere\n")
    finally:
        database.dispose()


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
    from b12dx.cli.followup_work import open_announced
    from b12dx.store import users
    from b12dx.store.audit import Actor

    database = open_announced(db)
    try:
        with database.transaction() as s:
            u = users.set_active(s, Actor(_actor_name()), _now(), username, active)
            state = "activated" if active else "deactivated; signed out everywhere"
            sys.stdout.write(f"user {u.username} {state}\n")
    finally:
        database.dispose()
