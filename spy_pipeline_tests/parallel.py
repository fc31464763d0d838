"""How `make test` spreads the suite over pytest-xdist workers (`-n N --dist loadgroup --no-loadscope-reorder`).

Heavy fixtures shared by a module's tests (a sandbox lake, a PostgreSQL server, `dagster dev` with Chromium) are
still built once: the tests that use a module- or class-scoped fixture form one xdist group, run by one worker.
Every other test goes to whichever worker is free. Groups go out first, the ones starting real servers (marked
`integration`) before the rest and larger before smaller, so the longest chains start at once instead of last.
New test modules need nothing to join in. Loaded by conftest.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

MODULE_SHARED_SCOPES = {"module", "class"}
SERVER_MARK = "integration"


def shared_fixture_group(item: pytest.Item) -> str | None:
    """The group of a test that uses a module- or class-scoped fixture: its module's path."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    scopes = {definition.scope for definitions in info.name2fixturedefs.values() for definition in definitions}
    return item.nodeid.split("::")[0] if scopes & MODULE_SHARED_SCOPES else None


def xdist_group(item: pytest.Item) -> str | None:
    """The group xdist makes of the test's xdist_group marks (their names, sorted and joined), if any."""
    names = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
             for mark in item.iter_markers("xdist_group")}
    return "_".join(sorted(names)) or None


def longest_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """Groups before single tests; among each, those starting servers first; then larger groups first."""
    groups = {item: xdist_group(item) for item in items}
    sizes = Counter(groups.values())
    with_servers = {groups[item] or item.nodeid for item in items if item.get_closest_marker(SERVER_MARK)}

    def rank(item: pytest.Item) -> tuple[bool, bool, int]:
        group = groups[item]
        return group is None, (group or item.nodeid) not in with_servers, -sizes[group] if group else 0

    return sorted(items, key=rank)  # stable: a module's tests keep their order


def give_node_ids_their_group(items: list[pytest.Item]) -> None:
    """pytest-xdist#1386: on pytest 9.2 xdist's `item._nodeid = "<id>@<group>"` no longer changes the node id, so
    `--dist loadgroup` silently stops grouping; set the suffix the way xdist's pending fix (#1388) does. Does
    nothing where xdist already did it."""
    from _pytest.nodeid import NodeId

    for item in items:
        group = xdist_group(item)
        if group and not item.nodeid.endswith(f"@{group}") and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Iterator[None]:
    distributed = getattr(config.option, "loadgroup", False)  # set in xdist's workers under --dist loadgroup
    if distributed:
        for item in items:
            if xdist_group(item) is None and (group := shared_fixture_group(item)):
                item.add_marker(pytest.mark.xdist_group(group))
    yield  # xdist's own hook turns the marks into work units
    if distributed:
        give_node_ids_their_group(items)
        items[:] = longest_first(items)
