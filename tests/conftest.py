from __future__ import annotations

import pytest

from b12dx.knowledge import Knowledge, load_knowledge

# A throwaway PostgreSQL server for the store tests (fixtures pg_server, pg_url).
pytest_plugins = ("pg",)


@pytest.fixture(scope="session")
def kb() -> Knowledge:
    return load_knowledge()
