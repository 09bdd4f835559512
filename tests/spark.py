"""One local Spark session for the whole test run (a pytest plugin, loaded by conftest.py).

Starting Spark (a JVM, its context, its first job) costs several seconds, so every test
that runs screening on Spark asks for ``spark`` and shares one session, started with
``b12dx.screen.run.start_spark`` as ``b12dx screen --engine spark`` starts it (local
mode, bound to 127.0.0.1). While it runs it is the process's active session, which
``screen.run.backend`` uses instead of starting another. Tests that use it carry the
``spark`` xdist group (``pytest_collection_modifyitems`` below, tests/node_ids.py), so under
``pytest -n`` they all run in one worker and the run starts Spark once.

Tests that need Spark fail when it cannot start (CI installs Java); they are skipped only
when PySpark itself is not installed (the spark extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from node_ids import add_xdist_group

MASTER = "local[2]"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    pytest.importorskip("pyspark", reason="the spark extra is not installed")
    from b12dx.screen.run import start_spark

    session = start_spark(MASTER)
    try:
        yield session
    finally:
        session.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "spark" in getattr(item, "fixturenames", ()):
            add_xdist_group(item, "spark")
