"""Changing a collected test's node id, which pytest-xdist schedules by.

pytest keeps the id as ``_nodeid`` up to version 8 and parsed as ``_id`` from version 9
(where pytest-xdist 3.8's own ``xdist_group`` suffix, written to ``_nodeid``, is lost), so
both are handled here, and a change that does not take is an error, never a test
silently scheduled wrong.
"""

from __future__ import annotations

import pytest


def set_node_id(item: pytest.Item, new: str) -> None:
    if hasattr(item, "_id"):
        item._id = type(item._id).parse(new)
    else:
        item._nodeid = new  # type: ignore[attr-defined]
    if item.nodeid != new:
        raise pytest.UsageError(f"could not set the node id of {item.nodeid} to {new}")


def add_xdist_group(item: pytest.Item, group: str) -> None:
    """What ``pytest.mark.xdist_group(group)`` does under ``--dist loadgroup``: every
    test of the group runs in one worker (the scheduler reads the ``@group`` suffix)."""
    if not item.nodeid.endswith(f"@{group}"):
        set_node_id(item, f"{item.nodeid}@{group}")
