from __future__ import annotations

import pytest

from b12dx.knowledge import Knowledge, load_knowledge


@pytest.fixture(scope="session")
def kb() -> Knowledge:
    return load_knowledge()
