"""`make test` runs the suite on pytest-xdist workers with ``--dist
loadgroup``: the tests of one ``xdist_group`` run in one worker, one after
another (the deadline and peak-RSS bounds, a module whose tests share
state, an expensive module fixture built once). pytest-xdist passes the group
to its scheduler in the node id; pytest 9.2 no longer takes that rewrite and
every group is silently ignored (pytest-xdist#1386), so this checks it."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("selfcheck")
def test_a_group_reaches_the_scheduler(request: pytest.FixtureRequest) -> None:
    config = request.config
    if not hasattr(config, "workerinput") or not getattr(config.option, "loadgroup", False):
        pytest.skip("run under pytest-xdist with --dist loadgroup (`make test`)")
    assert request.node.nodeid.endswith("@selfcheck"), (
        f"{request.node.nodeid}: the xdist_group mark is ignored (pytest {pytest.__version__})"
    )
