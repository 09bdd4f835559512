from __future__ import annotations

from collections import Counter

import pytest

from b12dx.knowledge import Knowledge, load_knowledge
from node_ids import set_node_id

# A throwaway PostgreSQL server for the store tests (fixtures pg_server, pg_url), one
# Spark session for the screening tests (fixture spark) and the CDS client-authentication
# tests' signing keys (fixtures rsa_key, ec_key).
pytest_plugins = ("pg", "spark", "jwt_keys", "bulk_server")


@pytest.fixture(scope="session")
def kb() -> Knowledge:
    return load_knowledge()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Schemathesis gives every operation of a spec the same node id (the operation is only
    # in the item's name). pytest-xdist's group scheduling keys its work by node id, so it
    # would run one operation per test and drop the rest: give each its own id.
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and not item.nodeid.endswith("]"):
            set_node_id(item, f"{item.nodeid}[{label}]")
    # And never again silently: two items with one id would be one test under xdist.
    twice = [nodeid for nodeid, n in Counter(i.nodeid for i in items).items() if n > 1]
    if twice:
        raise pytest.UsageError(f"tests share a node id, so xdist would run one: {twice[:5]}")
