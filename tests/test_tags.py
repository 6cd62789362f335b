"""`dist tags`, `dist catalog`, `dist tag` and `dist rm` against the real registry.

Distribution 2.8.2 paginates ``/v2/_catalog`` (``?n=`` and ``Link``) but
ignores ``?n=`` on ``tags/list`` and answers every tag at once (seen
2026-11). Catalog pagination is therefore tested end to end; for tags the
proxy stands in for a paginating registry on the first pages only, and the
registry answers the last one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from tests.dist_cli import one_error_line, run_dist
from tests.harness import (
    FaultProxy,
    Registry,
    Respond,
    inspect_digest,
    inspect_raw,
    push_image,
    simple_image,
)

Fresh = Callable[..., Registry]


def test_catalog_follows_link_pages(fresh_registry: Fresh) -> None:
    reg = fresh_registry()
    img = simple_image(tag="catalog")
    repos = [f"cat/r{i}" for i in range(5)]
    for repo in repos:
        push_image(reg, repo, "v1", img, method="http")
    with FaultProxy(reg) as proxy:
        out = run_dist("--json", "catalog", proxy.host, "-n", "2")
        assert out.returncode == 0, out.stderr.decode()
        assert json.loads(out.stdout)["repositories"] == repos
        gets = [e for e in proxy.log if e.path == "/v2/_catalog"]
        assert len(gets) >= 3
        assert parse_qs(gets[0].query)["n"] == ["2"]
        assert [parse_qs(e.query).get("last") for e in gets[1:3]] == [["cat/r1"], ["cat/r3"]]
    out = run_dist("catalog", reg.host)
    assert out.stdout.decode().split() == repos
    out = run_dist("catalog", "not a host")
    assert out.returncode == 2 and "registry" in one_error_line(out)


def test_tag_then_list_tags(registry: Registry, fault_proxy: FaultProxy, repo_name: str) -> None:
    img = simple_image(tag="tags")
    push_image(registry, repo_name, "v0", img)
    src = f"{registry.host}/{repo_name}:v0"
    for i in range(1, 5):
        out = run_dist("tag", src, f"v{i}")
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout.decode().split() == [f"{registry.host}/{repo_name}:v{i}", img.digest]
        assert inspect_raw(registry, f"{repo_name}:v{i}") == img.raw
    out = run_dist("--json", "tags", "-n", "2", f"{fault_proxy.host}/{repo_name}")
    assert out.returncode == 0, out.stderr.decode()
    doc = json.loads(out.stdout)
    assert doc["name"] == f"{fault_proxy.host}/{repo_name}"
    assert sorted(doc["tags"]) == [f"v{i}" for i in range(5)]
    assert parse_qs(fault_proxy.log[0].query)["n"] == ["2"]
    out = run_dist("tag", src, "not/a:tag")
    assert out.returncode == 2 and "invalid tag" in one_error_line(out)


def test_tags_pagination_relative_and_absolute_links(
    registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    push_image(registry, repo_name, "z9", simple_image(tag="tags-pages"))
    path = f"/v2/{repo_name}/tags/list"

    def page(tags: list[str], link: str) -> Respond:
        body = json.dumps({"name": repo_name, "tags": tags}).encode()
        headers = (("Content-Type", "application/json"), ("Link", f'<{link}>; rel="next"'))
        return Respond(200, body=body, headers=headers)

    fault_proxy.add(page(["a", "b"], f"{path}?last=b&n=2"), method="GET", path="/tags/list$")
    fault_proxy.add(page(["c", "d"], f"{fault_proxy.url}{path}?last=d&n=2"), method="GET",
                    path="/tags/list$")  # fmt: skip
    out = run_dist("tags", "--page-size", "2", f"{fault_proxy.host}/{repo_name}")
    assert out.returncode == 0, out.stderr.decode()
    # Two pages from the stand-in, then the registry's own (last) answer.
    assert out.stdout.decode().split() == ["a", "b", "c", "d", "z9"]
    queries = [parse_qs(e.query) for e in fault_proxy.log]
    assert [q.get("last") for q in queries] == [None, ["b"], ["d"]]
    assert all(q["n"] == ["2"] for q in queries)


def test_rm_by_tag_and_by_digest(registry: Registry, repo_name: str) -> None:
    a, b = simple_image(tag="rm-a"), simple_image(tag="rm-b")
    push_image(registry, repo_name, "a", a)
    push_image(registry, repo_name, "b", b)
    out = run_dist("rm", f"{registry.host}/{repo_name}:a")
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == ["deleted", f"{registry.host}/{repo_name}@{a.digest}"]
    out = run_dist("resolve", f"{registry.host}/{repo_name}:a")
    assert out.returncode == 1 and "not found" in one_error_line(out)
    out = run_dist("--json", "rm", f"{registry.host}/{repo_name}@{b.digest}")
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout)["digest"] == b.digest
    out = run_dist("resolve", f"{registry.host}/{repo_name}@{b.digest}")
    assert out.returncode == 1
    out = run_dist("rm", f"{registry.host}/{repo_name}:a")
    assert out.returncode == 1 and "not found" in one_error_line(out)


def test_rm_refused_when_registry_forbids_deletes(fresh_registry: Fresh) -> None:
    reg = fresh_registry(extra={"storage": {"delete": {"enabled": False}}})
    img = simple_image(tag="rm-refused")
    push_image(reg, "keep/me", "v1", img, method="http")
    out = run_dist("rm", f"{reg.host}/keep/me:v1")
    assert out.returncode == 1
    assert "405" in one_error_line(out) or "unsupported" in one_error_line(out).lower()
    assert inspect_digest(reg, "keep/me:v1") == img.digest


def test_tags_bad_input(tmp_path: Path) -> None:
    out = run_dist("tags", "example.com/a/b:v1")
    assert out.returncode == 2 and "without tag" in one_error_line(out)
    out = run_dist("tags", "-n", "-1", "example.com/a/b")
    assert out.returncode == 2
