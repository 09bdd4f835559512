"""The optional parts of the package (pyproject.toml ``[project.optional-dependencies]``):
which modules each extra brings, and the one message a command gives when its extra is
not installed. ``pip install b12dx`` is the core (the knowledge base, the engine,
``assess``, ``explain``, FHIR input); the rest is installed by need."""

from __future__ import annotations

from importlib.util import find_spec

from b12dx.errors import MissingExtra

# The top-level modules each extra installs (the import names, not the package names).
MODULES: dict[str, tuple[str, ...]] = {
    "store": ("sqlalchemy", "alembic", "argon2", "psycopg", "zxcvbn"),
    "web": (
        "fastapi",
        "uvicorn",
        "jinja2",
        "multipart",
        "icalendar",
        "jwt",
        "httpx",
        # The web app holds the follow-up pages, so it needs the store's modules too.
        "sqlalchemy",
        "alembic",
        "argon2",
        "zxcvbn",
    ),
    "screen": ("ibis", "duckdb", "pyarrow", "numpy"),
    "screen-postgres": ("ibis", "duckdb", "pyarrow", "numpy", "duckdb_ext"),
    "bulk": ("httpx", "jwt", "cryptography"),
    "spark": ("pyspark",),
}


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [m for m in MODULES[extra] if find_spec(m) is None]


def need(extra: str, what: str) -> None:
    """Raise MissingExtra naming the install command when ``extra`` is not installed.
    ``what``: the command or option that needs it, as the user typed it."""
    gone = missing(extra)
    if gone:
        raise missing_extra(extra, what, gone)


def missing_extra(extra: str, what: str, gone: list[str]) -> MissingExtra:
    """The error that says which extra to install, and how."""
    return MissingExtra(
        f"{what} needs the optional packages of b12dx[{extra}] (not installed: "
        f"{', '.join(gone)}): pip install 'b12dx[{extra}]'"
    )


def extra_of(module: str | None) -> str | None:
    """The smallest extra that installs ``module`` (a dotted name is read by its top
    level); None when no extra does."""
    top = (module or "").split(".")[0]
    holding = [e for e, mods in MODULES.items() if top in mods]
    return min(holding, key=lambda e: len(MODULES[e])) if holding else None
