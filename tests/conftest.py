"""pytest fixtures over tests/harness (real registry, skopeo, fault proxy)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness import FaultProxy, Registry, repo_name_for
from tests.harness.dockerd import Dockerd, unavailable_reason
from tests.harness.registry import REGISTRY_BIN


def _require(program: str) -> None:
    if shutil.which(program) is None:
        pytest.skip(f"{program} is not installed (run `make deps`)")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """One anonymous registry for the whole session; tests must use their own
    repository (``repo_name``) and must not stop or restart it."""
    _require(REGISTRY_BIN)
    with Registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name unique to this test (``t/<module>/<test-name>``)."""
    return repo_name_for(request.node.nodeid)


RegistryFactory = Callable[..., Registry]


@pytest.fixture
def fresh_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFactory]:
    """``fresh_registry(**Registry kwargs) -> Registry``: a started registry of
    the test's own (restartable, any auth/TLS/proxy mode), stopped afterwards."""
    _require(REGISTRY_BIN)
    started: list[Registry] = []

    def make(**kwargs: Any) -> Registry:
        reg = Registry(tmp_path_factory.mktemp("fresh-registry"), **kwargs)
        started.append(reg)
        return reg.start()

    yield make
    for reg in started:
        reg.stop()


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session registry; no rules yet."""
    with FaultProxy(registry) as proxy:
        yield proxy


@pytest.fixture
def skopeo() -> str:
    """Path of skopeo; skips the test when it is missing."""
    _require("skopeo")
    path = shutil.which("skopeo")
    assert path is not None
    return path


@pytest.fixture
def umoci() -> str:
    _require("umoci")
    path = shutil.which("umoci")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private Docker daemon for the test module (its own data root,
    exec root, socket and containerd), stopped by PID afterwards. Skips only
    where it cannot run (not installed, not root); a daemon that should start
    and does not is an error."""
    why = unavailable_reason()
    if why is not None:
        pytest.skip(why)
    with Dockerd(tmp_path_factory.mktemp("dockerd")) as daemon:
        yield daemon


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: long-running test (handed out first to pytest-xdist workers)"
    )
    config.addinivalue_line(
        "markers", "packaging: builds a fresh venv with `pip install .` (about 10 s)"
    )
    # pytest-xdist registers it too; named here so that the suite also runs
    # without the plugin (-p no:xdist) and without a warning.
    config.addinivalue_line(
        "markers",
        "xdist_group(name): under `make test` (--dist loadgroup) one worker runs the group, "
        "one test after another: 'timing' for deadline and peak-RSS bounds, or tests "
        "sharing an expensive module fixture",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the tests marked ``slow`` come first: the
    controller hands tests out in collection order, so a long test collected
    last would run alone at the end while the other workers sit idle. Every
    worker sorts the same way (xdist checks that the collections match); a
    plain run keeps the files' order."""
    if not hasattr(config, "workerinput"):
        return
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
