from __future__ import annotations

import pytest

from b12dx.knowledge import Knowledge, load_knowledge

# A throwaway PostgreSQL server for the store tests (fixtures pg_server, pg_url) and
# one Spark session for the screening tests (fixture spark).
pytest_plugins = ("pg", "spark")


@pytest.fixture(scope="session")
def kb() -> Knowledge:
    return load_knowledge()
