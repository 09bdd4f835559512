"""Practices, their users, signing in and signed-in sessions.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile);
a stored hash made with other parameters is replaced at the next successful sign-in.

Lockout: ``MAX_FAILED_LOGINS`` (100) wrong passwords in a row, from any addresses, lock the
account for ``LOCKOUT``; a correct password resets the count. During a lockout even the right
password is refused. An unknown username, a wrong password, a locked and a deactivated
account all get the same answer (``None``) after the same work (one argon2 verification),
so the answer does not tell whether a username exists.

Sessions: the browser holds a random token (256 bits); only its SHA-256 is stored, so a
copy of the database does not sign anyone in. A session ends after ``IDLE_TIMEOUT``
without a request, or ``ABSOLUTE_TIMEOUT`` after sign-in whatever the activity, or at
sign-out (the row is deleted). Each session has its own CSRF token for forms and the API.

Every sign-in, failed sign-in, lockout, unlock and sign-out is in the audit log (never
the password or a token).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from b12dx.errors import B12dxError, FieldError, InputError
from b12dx.store import audit
from b12dx.store.audit import Actor
from b12dx.store.db import Database, later_if_reading
from b12dx.store.tables import AuditEntry, LoginSession, Practice, User

# NIST SP 800-63B 5.2.2: at most 100 consecutive failed attempts on one account. Guessing
# from one address is slowed far sooner, per address and username (web/rate_limit.py), so
# only a guess spread over many addresses reaches this, and nobody can lock an account by
# knowing its name.
MAX_FAILED_LOGINS = 100
LOCKOUT = dt.timedelta(minutes=15)
# A practice nurse steps away between patients: 30 minutes idle signs them out; a clinic
# day is under 12 hours, after which everyone signs in again.
IDLE_TIMEOUT = dt.timedelta(minutes=30)
ABSOLUTE_TIMEOUT = dt.timedelta(hours=12)
# The idle deadline moves forward at most once a minute (one write, not one per request).
REFRESH_AFTER = dt.timedelta(minutes=1)
MIN_PASSWORD_LENGTH = 12  # NIST SP 800-63B asks for 8 at least; clinical data, so more
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this only bounds the work per try
MIN_PASSWORD_SCORE = 3  # of zxcvbn's 0-4: "safely unguessable" begins at 3
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-@")

HASHER = PasswordHasher()


class AccountError(B12dxError):
    """A practice or user that does not exist or cannot be created as asked."""


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back stored UTC times without their zone; PostgreSQL with it."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@cache
def _dummy_hash(parameters: tuple[int, int, int, int, int]) -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def _verify_dummy(password: str) -> None:
    """The same argon2 work as a real check, for usernames that do not exist."""
    h = HASHER
    key = (h.time_cost, h.memory_cost, h.parallelism, h.hash_len, h.salt_len)
    with contextlib.suppress(VerificationError):
        HASHER.verify(_dummy_hash(key), password)


# -- practices ---------------------------------------------------------------------------


def create_practice(session: Session, actor: Actor, now: dt.datetime, name: str) -> Practice:
    name = name.strip()
    if not 0 < len(name) <= 200:
        raise InputError.single("name", "must be 1 to 200 characters")
    if session.scalars(select(Practice).where(func.lower(Practice.name) == name.lower())).first():
        raise InputError.single("name", f"a practice named {name!r} already exists")
    practice = Practice(name=name, created_at=now)
    session.add(practice)
    session.flush()
    audit.record(
        session,
        Actor(actor.name, practice.id),
        now,
        "create",
        "practice",
        practice.id,
        None,
        {"name": name},
    )
    return practice


def practices(session: Session) -> list[Practice]:
    return list(session.scalars(select(Practice).order_by(Practice.id)))


def practice_named(session: Session, name: str) -> Practice:
    found = session.scalars(
        select(Practice).where(func.lower(Practice.name) == name.strip().lower())
    ).first()
    if found is None:
        names = ", ".join(p.name for p in practices(session))
        raise AccountError(f"practice: no practice named {name!r} (there are: {names})")
    return found


def practice_name(session: Session, practice_id: int) -> str:
    p = session.get(Practice, practice_id)
    return p.name if p is not None else f"practice {practice_id}"


# -- users -------------------------------------------------------------------------------


def normalise_username(username: str) -> str:
    return username.strip().lower()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InputError.single(
            "password", f"is {len(password)} characters", f"at least {MIN_PASSWORD_LENGTH}"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InputError.single("password", f"is longer than {MAX_PASSWORD_LENGTH} characters")
    # NIST SP 800-63B 5.1.1.2: refuse what is common, expected or guessable (a dictionary
    # word with digits, twelve spaces, "password1234"). zxcvbn weighs the password against
    # its lists of common passwords, words and names and its patterns (repeats, sequences,
    # keyboard walks); a score under 3 of 4 is too easy to guess. It reads the first 72
    # characters (its own bound on the work per check).
    from zxcvbn import zxcvbn

    judged = zxcvbn(password[:72])
    if judged["score"] < MIN_PASSWORD_SCORE:
        warning = judged["feedback"].get("warning") or "it is too easy to guess"
        raise InputError.single(
            "password",
            f"is too easy to guess ({warning.rstrip('.').lower()})",
            "a longer phrase of words that do not belong together",
        )


def create_user(
    session: Session,
    actor: Actor,
    now: dt.datetime,
    *,
    username: str,
    password: str,
    practice_id: int,
) -> User:
    name = normalise_username(username)
    errors: list[FieldError] = []
    if not 0 < len(name) <= 100 or not set(name) <= USERNAME_CHARS:
        errors.append(
            FieldError(
                "username",
                f"{username!r} is not a username",
                "1 to 100 letters, digits and . _ - @",
            )
        )
    try:
        check_password(password)
    except InputError as exc:
        errors += exc.errors
    if session.get(Practice, practice_id) is None:
        errors.append(FieldError("practice", f"no practice {practice_id}"))
    if errors:
        raise InputError(errors)
    if session.scalars(select(User).where(User.username == name)).first() is not None:
        raise InputError.single("username", f"{name!r} is already taken")
    user = User(
        username=name,
        password_hash=HASHER.hash(password),
        practice_id=practice_id,
        failed_logins=0,
        locked_until=None,
        active=True,
        created_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        Actor(actor.name, practice_id),
        now,
        "create",
        "user",
        user.id,
        None,
        {"username": name},
    )
    return user


def users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.practice_id, User.username)))


def user_named(session: Session, username: str) -> User:
    user = session.scalars(
        select(User).where(User.username == normalise_username(username))
    ).first()
    if user is None:
        raise AccountError(f"user: no user {username!r}")
    return user


def is_locked(user: User, now: dt.datetime) -> bool:
    return user.locked_until is not None and utc(user.locked_until) > now


def unlock(session: Session, actor: Actor, now: dt.datetime, username: str) -> User:
    user = user_named(session, username)
    was_locked = is_locked(user, now)
    user.failed_logins = 0
    user.locked_until = None
    audit.record(
        session,
        Actor(actor.name, user.practice_id),
        now,
        "unlock",
        "user",
        user.id,
        None,
        {"username": user.username, "was_locked": was_locked},
    )
    return user


def set_password(
    session: Session, actor: Actor, now: dt.datetime, username: str, password: str
) -> User:
    """A new password; every signed-in session of the user ends (a stolen session must not
    outlive the password change)."""
    check_password(password)
    user = user_named(session, username)
    user.password_hash = HASHER.hash(password)
    user.failed_logins = 0
    user.locked_until = None
    ended = _end_all_sessions(session, user)
    audit.record(
        session,
        Actor(actor.name, user.practice_id),
        now,
        "set_password",
        "user",
        user.id,
        None,
        {"username": user.username, "sessions_ended": ended},
    )
    return user


def set_active(
    session: Session, actor: Actor, now: dt.datetime, username: str, active: bool
) -> User:
    """Deactivate (someone who has left: they can no longer sign in, and their sessions
    end) or reactivate a user. Users are never deleted: the audit log names them."""
    user = user_named(session, username)
    user.active = active
    ended = 0 if active else _end_all_sessions(session, user)
    audit.record(
        session,
        Actor(actor.name, user.practice_id),
        now,
        "activate" if active else "deactivate",
        "user",
        user.id,
        None,
        {"username": user.username, "sessions_ended": ended},
    )
    return user


def _end_all_sessions(session: Session, user: User) -> int:
    result = session.execute(delete(LoginSession).where(LoginSession.user_id == user.id))
    return int(getattr(result, "rowcount", 0) or 0)


# -- signing in --------------------------------------------------------------------------


def _failed(session: Session, user: User | None, now: dt.datetime, reason: str) -> None:
    if user is None:
        # No practice and no username: what was typed may be a password in the wrong box.
        session.add(
            AuditEntry(
                at=now,
                actor="unknown user",
                practice_id=None,
                patient_id=None,
                action="login_failed",
                entity="user",
                entity_id=None,
                detail={"reason": reason},
            )
        )
        return
    audit.record(
        session,
        Actor(user.username, user.practice_id),
        now,
        "login_failed",
        "user",
        user.id,
        None,
        {"reason": reason, "failures": user.failed_logins},
    )


@dataclass(frozen=True)
class PasswordVerdict:
    """What argon2 said of a password, reached outside any transaction (one verification
    is tens of milliseconds of CPU: holding the write lock through it queued every other
    request behind each sign-in)."""

    username: str  # normalised; "" when it cannot be a username
    checked_hash: str | None  # the stored hash the password was verified against
    right: bool
    too_long: bool
    new_hash: str | None  # the password hashed anew when the stored parameters are old


def verify_password(db: Database, username: str, password: str) -> PasswordVerdict:
    """Look the user's hash up in a read, then verify the password with no transaction
    open. An unknown username gets the same argon2 work as a known one."""
    name = normalise_username(username)
    valid = 0 < len(name) <= 100 and set(name) <= USERNAME_CHARS  # no NUL reaches the query
    stored = None
    if valid:
        with db.reading() as s:
            stored = s.scalars(select(User.password_hash).where(User.username == name)).first()
    too_long = len(password) > MAX_PASSWORD_LENGTH
    if stored is None or too_long:
        _verify_dummy(password[:MAX_PASSWORD_LENGTH])
        return PasswordVerdict(name if valid else "", stored, False, too_long, None)
    try:
        HASHER.verify(stored, password)
        right = True
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        right = False
    new_hash = HASHER.hash(password) if right and HASHER.check_needs_rehash(stored) else None
    return PasswordVerdict(name, stored, right, False, new_hash)


def authenticate(session: Session, verdict: PasswordVerdict, now: dt.datetime) -> User | None:
    """Apply a verdict in a write transaction: the user, when the password was right and
    the account is usable; else None, counted towards the lockout (see the module's
    docstring). The user's row is read again under the write lock, so two sign-ins at
    once count both failures, and a password changed since the verdict is not right."""
    user = (
        session.scalars(
            select(User).where(User.username == verdict.username).with_for_update()
        ).first()
        if verdict.username
        else None
    )
    if user is None or verdict.too_long:
        _failed(session, user, now, "unknown user" if user is None else "password too long")
        return None
    right = verdict.right and user.password_hash == verdict.checked_hash
    if not user.active:
        _failed(session, user, now, "account deactivated")
        return None
    if is_locked(user, now):
        _failed(session, user, now, "account locked")
        return None
    if not right:
        user.failed_logins += 1
        _failed(session, user, now, "wrong password")
        if user.failed_logins >= MAX_FAILED_LOGINS:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
            audit.record(
                session,
                Actor(user.username, user.practice_id),
                now,
                "lockout",
                "user",
                user.id,
                None,
                {"until": (now + LOCKOUT).isoformat(), "after_failures": MAX_FAILED_LOGINS},
            )
        return None
    user.failed_logins = 0
    user.locked_until = None
    if verdict.new_hash is not None:
        user.password_hash = verdict.new_hash
    audit.record(
        session, Actor(user.username, user.practice_id), now, "login", "user", user.id, None, {}
    )
    return user


def sign_in(db: Database, username: str, password: str, now: dt.datetime) -> str | None:
    """Verify the password (no transaction open), then in one short write transaction
    count the attempt and start a session: the token for the cookie, or None."""
    verdict = verify_password(db, username, password)
    with db.transaction() as s:
        user = authenticate(s, verdict, now)
        return None if user is None else start_session(s, user, now)[0]


# -- sessions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedIn:
    """A valid session: who, in which practice, and the CSRF token of the session."""

    session_id: int
    user_id: int
    username: str
    practice_id: int
    csrf_token: str

    @property
    def actor(self) -> Actor:
        return Actor(self.username, self.practice_id)


def start_session(session: Session, user: User, now: dt.datetime) -> tuple[str, SignedIn]:
    """A new session for ``user``: returns the token for the cookie (never stored)."""
    session.execute(
        delete(LoginSession).where(LoginSession.user_id == user.id, LoginSession.expires_at <= now)
    )
    token = secrets.token_urlsafe(32)
    row = LoginSession(
        token_hash=token_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + IDLE_TIMEOUT,
    )
    session.add(row)
    session.flush()
    return token, SignedIn(row.id, user.id, user.username, user.practice_id, row.csrf_token)


def resume_session(session: Session, token: str, now: dt.datetime) -> SignedIn | None:
    """The session the cookie's token names, if it is still valid (its idle deadline is
    moved forward); None otherwise (an expired session is deleted)."""
    if not token or len(token) > 100:
        return None
    row = session.scalars(
        select(LoginSession).where(LoginSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return None
    user = session.get(User, row.user_id)
    absolute = utc(row.created_at) + ABSOLUTE_TIMEOUT
    row_id = row.id
    if user is None or not user.active or utc(row.expires_at) <= now or absolute <= now:
        later_if_reading(
            session, lambda s: s.execute(delete(LoginSession).where(LoginSession.id == row_id))
        )
        return None
    if now + IDLE_TIMEOUT - utc(row.expires_at) >= REFRESH_AFTER:
        deadline = min(now + IDLE_TIMEOUT, absolute)
        later_if_reading(
            session,
            lambda s: s.execute(
                update(LoginSession)
                .where(LoginSession.id == row_id)
                .values(expires_at=deadline)
                .execution_options(synchronize_session=False)
            ),
        )
    return SignedIn(row.id, user.id, user.username, user.practice_id, row.csrf_token)


def end_session(session: Session, token: str, now: dt.datetime) -> bool:
    """Sign out: the session is deleted. False when there was none."""
    row = session.scalars(
        select(LoginSession).where(LoginSession.token_hash == token_hash(token))
    ).first()
    if row is None:
        return False
    user = session.get(User, row.user_id)
    session.delete(row)
    if user is not None:
        audit.record(
            session,
            Actor(user.username, user.practice_id),
            now,
            "logout",
            "user",
            user.id,
            None,
            {},
        )
    return True
