"""`dist attach` and `dist referrers`.

Distribution 2.8 (the registry here) has no referrers API, so the referrers
tag schema is tested against it for real. No registry with the API can be
installed here (zot and Distribution 3 are neither on PyPI, npm nor Debian,
and building them needs a Go newer than Debian's 1.19 from a module proxy
this machine cannot reach), so the API path is tested against the fault
proxy answering ``/referrers/`` with canned indexes — a double of that one
endpoint only; everything else is the real registry.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.dist_cli import one_error_line
from tests.harness import AddHeader, FaultProxy, Registry, Respond, inspect_raw, simple_image
from tests.harness.push import push_image
from tests.test_layout import dist, ok

SBOM = "application/spdx+json"
SIG = "application/vnd.example.signature.v1"


def attach(root: Path, host: str, subject: str, artifact_type: str, *files: str,
           note: str = "") -> dict[str, object]:  # fmt: skip
    args = ["--json", "attach", f"{host}/{subject}", *files, "--artifact-type", artifact_type]
    if note:
        args += ["-a", f"org.example.note={note}"]
    return dict(json.loads(ok(dist(root, *args)).stdout.decode().splitlines()[-1]))


def referrers(root: Path, ref: str, *extra: str) -> dict[str, object]:
    return dict(json.loads(ok(dist(root, "--json", "referrers", ref, *extra)).stdout))


def test_attach_and_list_with_the_referrers_tag(
    tmp_path: Path, registry: Registry, repo_name: str, skopeo: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    root = tmp_path / "root"
    (tmp_path / "sbom.json").write_text('{"spdxVersion": "SPDX-2.3"}')
    sbom = attach(root, registry.host, f"{repo_name}:v1", SBOM, str(tmp_path / "sbom.json"),
                  note="first")  # fmt: skip
    sig = attach(root, registry.host, f"{repo_name}:v1", SIG)
    tag = f"sha256-{image.digest[7:]}"
    assert sbom["referrersTag"] == sig["referrersTag"] == tag
    # The referrer itself names the image as its subject (as skopeo sees it).
    pushed = json.loads(inspect_raw(registry, f"{repo_name}@{sbom['digest']}"))
    assert pushed["subject"] == {
        "mediaType": image.media_type, "digest": image.digest, "size": image.size
    }  # fmt: skip
    assert pushed["artifactType"] == SBOM
    # The tag holds an OCI index listing both, with artifactType and annotations.
    index = json.loads(inspect_raw(registry, f"{repo_name}:{tag}"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    entries = {m["digest"]: m for m in index["manifests"]}
    assert set(entries) == {sbom["digest"], sig["digest"]}
    assert entries[sbom["digest"]]["artifactType"] == SBOM
    assert entries[sbom["digest"]]["annotations"] == {"org.example.note": "first"}
    listed = referrers(root, f"{registry.host}/{repo_name}:v1")
    assert listed["via"] == "tag"
    assert {d["digest"] for d in listed["referrers"]} == set(entries)  # type: ignore[union-attr]
    only = referrers(root, f"{registry.host}/{repo_name}:v1", "--artifact-type", SIG)
    assert [d["digest"] for d in only["referrers"]] == [sig["digest"]]  # type: ignore[union-attr]
    # Attaching the same thing again adds no second entry.
    again = attach(root, registry.host, f"{repo_name}:v1", SIG)
    assert again["digest"] == sig["digest"]
    index = json.loads(inspect_raw(registry, f"{repo_name}:{tag}"))
    assert len(index["manifests"]) == 2
    human = ok(dist(root, "referrers", f"{registry.host}/{repo_name}:v1")).stdout.decode()
    assert SBOM in human and "org.example.note=first" in human


def test_nothing_attached_is_an_empty_list(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    push_image(registry, repo_name, "v1", simple_image(tag=repo_name))
    listed = referrers(tmp_path, f"{registry.host}/{repo_name}:v1")
    assert listed["referrers"] == [] and listed["via"] == "tag"


def test_referrers_tag_holding_something_else_is_refused(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    # Someone tagged an image (not an OCI index) with the schema's tag name.
    push_image(registry, repo_name, f"sha256-{image.digest[7:]}", simple_image(tag="other"))
    proc = dist(tmp_path, "referrers", f"{registry.host}/{repo_name}:v1")
    assert proc.returncode == 1 and "does not hold an OCI image index" in one_error_line(proc)


def _canned_index(*entries: dict[str, object]) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": list(entries),
    }
    return json.dumps(doc).encode()


def _entry(n: int, artifact_type: str) -> dict[str, object]:
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{n:064x}",
        "size": 100 + n,
        "artifactType": artifact_type,
        "annotations": {"n": str(n)},
    }


def test_referrers_api_is_used_where_the_registry_has_it(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    path = f"/v2/{repo_name}/referrers/{image.digest}"
    ct = (("Content-Type", "application/vnd.oci.image.index.v1+json"),)
    # Two pages, linked as the distribution-spec says.
    page2 = f"{path}?last=x"
    fault_proxy.add(
        Respond(200, _canned_index(_entry(1, SBOM)), (*ct, ("Link", f'<{page2}>; rel="next"'))),
        method="GET",
        path=f"^{path}$",
    )
    fault_proxy.add(Respond(200, _canned_index(_entry(2, SIG)), ct), method="GET", path=path)
    listed = referrers(tmp_path, f"{fault_proxy.host}/{repo_name}:v1")
    assert listed["via"] == "api"
    assert [d["digest"] for d in listed["referrers"]] == [  # type: ignore[union-attr]
        f"sha256:{1:064x}",
        f"sha256:{2:064x}",
    ]
    assert [e.query for e in fault_proxy.log if "/referrers/" in e.path] == ["", "last=x"]
    # A registry that does not say it filtered is filtered here.
    fault_proxy.clear()
    both = _canned_index(_entry(1, SBOM), _entry(2, SIG))
    fault_proxy.add(Respond(200, both, ct), method="GET", path=path)
    only = referrers(tmp_path, f"{fault_proxy.host}/{repo_name}:v1", "--artifact-type", SIG)
    assert [d["digest"] for d in only["referrers"]] == [f"sha256:{2:064x}"]  # type: ignore[union-attr]
    [asked] = [e for e in fault_proxy.log if "/referrers/" in e.path]
    assert asked.query == "artifactType=application%2Fvnd.example.signature.v1"
    # One that did is trusted (it answered for that type alone).
    fault_proxy.clear()
    filtered = (*ct, ("OCI-Filters-Applied", "artifactType"))
    fault_proxy.add(Respond(200, _canned_index(_entry(3, SIG)), filtered), method="GET", path=path)
    only = referrers(tmp_path, f"{fault_proxy.host}/{repo_name}:v1", "--artifact-type", SIG)
    assert [d["digest"] for d in only["referrers"]] == [f"sha256:{3:064x}"]  # type: ignore[union-attr]


def test_attach_leaves_the_tag_alone_when_the_registry_confirms_the_subject(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    # A registry with the API answers the manifest PUT with OCI-Subject.
    fault_proxy.add(
        AddHeader("OCI-Subject", image.digest), method="PUT", path="/manifests/", times=None
    )
    done = attach(tmp_path, fault_proxy.host, f"{repo_name}:v1", SIG)
    assert "referrersTag" not in done
    tag_puts = [e for e in fault_proxy.log if e.method == "PUT" and "/manifests/sha256-" in e.path]
    assert tag_puts == []
    # Without the header (Distribution 2.8 itself), the tag is written.
    done = attach(tmp_path, registry.host, f"{repo_name}:v1", SBOM)
    assert done["referrersTag"] == f"sha256-{image.digest[7:]}"


def test_a_listed_manifest_that_does_not_refer_to_the_subject_is_not_carried(
    tmp_path: Path, registry: Registry, repo_name: str
) -> None:
    """The referrers list is the registry's word (or whoever could push the
    tag); what `copy --referrers` and `pull --referrers` carry is checked
    against each manifest's own subject: an unrelated image listed there is
    skipped with a warning, never copied nor recorded at the destination as
    attached to the image."""
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    other = simple_image(tag="unrelated")
    push_image(registry, repo_name, "other", other)
    root = tmp_path / "root"
    sig = attach(root, registry.host, f"{repo_name}:v1", SIG)
    tag = f"sha256-{image.digest[7:]}"
    index = json.loads(inspect_raw(registry, f"{repo_name}:{tag}"))
    index["manifests"].append(
        {
            "mediaType": other.media_type,
            "digest": other.digest,
            "size": other.size,
            "artifactType": SIG,
        }
    )
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(index))
    ok(dist(root, "push-object", f"{registry.host}/{repo_name}:{tag}", str(forged),
            "--media-type", "application/vnd.oci.image.index.v1+json"))  # fmt: skip
    src = f"{registry.host}/{repo_name}:v1"
    dst = f"{registry.host}/{repo_name}/copy:v1"
    proc = ok(dist(root, "--json", "copy", "--referrers", src, dst))
    doc = json.loads(proc.stdout.decode().splitlines()[-1])
    assert [r["digest"] for r in doc["referrers"]] == [sig["digest"]]
    warnings = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    assert any(other.digest in w["message"] for w in warnings if w["event"] == "warning")
    listed = referrers(root, dst)
    assert [r["digest"] for r in listed["referrers"]] == [sig["digest"]]  # type: ignore[union-attr]
    proc = dist(
        tmp_path / "copy-check", "inspect", f"{registry.host}/{repo_name}/copy@{other.digest}"
    )
    assert proc.returncode == 1  # never copied
    store = tmp_path / "store"
    proc = ok(dist(store, "--json", "pull", "--referrers", src))
    pulled = json.loads(proc.stdout.decode().splitlines()[-1])
    assert [r["digest"] for r in pulled["referrers"]] == [sig["digest"]]
    assert not (store / "blobs" / "sha256" / other.digest[7:]).exists()


def test_a_referrers_listing_is_bounded_however_many_pages(
    tmp_path: Path, registry: Registry, fault_proxy: FaultProxy, repo_name: str
) -> None:
    image = simple_image(tag=repo_name)
    push_image(registry, repo_name, "v1", image)
    path = f"/v2/{repo_name}/referrers/{image.digest}"
    ct = ("Content-Type", "application/vnd.oci.image.index.v1+json")
    # Every page holds 6,000 entries and links to the next.
    for page in range(3):
        body = _canned_index(*(_entry(page * 6000 + i, SIG) for i in range(6000)))
        link = ("Link", f'<{path}?page={page + 1}>; rel="next"')
        # Rules match the path without its query, each once, in order.
        fault_proxy.add(Respond(200, body, (ct, link)), method="GET", path=f"^{path}$")
    proc = dist(tmp_path, "referrers", f"{fault_proxy.host}/{repo_name}:v1")
    assert proc.returncode == 1
    assert "more than 10000 children is too many" in one_error_line(proc)
