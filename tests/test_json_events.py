"""Every command's --json output against docs/events.schema.json: each line
one object with an ``event`` the schema knows, stdout for results, stderr for
warnings and errors. A completeness check keeps new commands honest."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ocidist.cli.main import COMMANDS, build_parser
from tests.dist_cli import run_dist
from tests.harness import Registry, build_layer, push_image, simple_image

SCHEMA = json.loads((Path(__file__).parent.parent / "docs/events.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)

# Commands whose output is data, not JSON (documented in docs/JSON.md).
NOT_JSON = {
    "serve": "writes nothing to stdout",
    "completion": "a shell script",
    "content get": "the blob's bytes",
}
COVERED: set[str] = set()
# The module's tests fill COVERED, which the last one reads: under `make
# test`'s xdist they must all run in one worker process, in file order.
pytestmark = pytest.mark.xdist_group("json-events")


def _commands() -> set[str]:
    """Every command path (``images ls``, ``resolve``, …) the parser has."""
    import argparse

    out: set[str] = set()

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    path = f"{prefix} {name}".strip()
                    if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                        walk(sub, path)
                    else:
                        out.add(path)

    walk(build_parser(), "")
    return out


def events(proc: subprocess.CompletedProcess[bytes], stream: str = "stdout") -> list[Any]:
    text = getattr(proc, stream).decode()
    out = []
    for line in text.splitlines():
        doc = json.loads(line)  # each line is one JSON document
        errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: e.path)
        assert not errors, (line, [e.message for e in errors][:3])
        out.append(doc)
    return out


class Dist:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env

    def __call__(self, *args: str, ok: bool = True, input: bytes | None = None) -> list[Any]:
        command = " ".join(a for a in args[:2] if not a.startswith("-") and "/" not in a)
        COVERED.update(c for c in (args[0], command) if c)
        proc = run_dist("--json", "--root", str(self.root), *args, input=input, env=self.env)
        if ok:
            assert proc.returncode == 0, proc.stderr.decode()
            assert events(proc, "stderr") == []
            return events(proc)
        assert proc.returncode != 0
        assert proc.stdout == b"" or events(proc)
        errs = events(proc, "stderr")
        assert errs[-1]["event"] == "error" and errs[-1]["exitCode"] == proc.returncode, errs
        return errs


@pytest.fixture(scope="module")
def world(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Dist, str, Path]]:
    base = tmp_path_factory.mktemp("json")
    image = simple_image(tag="json-events")
    repo = "t/json-events/app"
    push_image(registry, repo, "v1", image)
    env = {"DOCKER_CONFIG": str(base / "docker"), "REGISTRY_AUTH_FILE": str(base / "auth.json")}
    yield Dist(base / "root", env), f"{registry.host}/{repo}", base


def kinds(evs: list[Any]) -> list[str]:
    return [e["event"] for e in evs]


def test_registry_commands(world: tuple[Dist, str, Path], registry: Registry) -> None:
    dist, repo, base = world
    ref = f"{repo}:v1"
    assert kinds(dist("resolve", ref)) == ["resolved"]
    assert kinds(dist("tags", repo)) == ["tags"]
    assert kinds(dist("catalog", registry.host)) == ["catalog"]
    assert kinds(dist("tag", ref, "v2")) == ["tagged"]
    push_image(registry, repo.split("/", 1)[1], "gone", simple_image(tag="json-events-rm"))
    assert kinds(dist("rm", f"{repo}:gone")) == ["deleted"]
    inspected = dist("inspect", ref)
    assert kinds(inspected) == ["inspected"]
    blob = base / "blob.bin"
    blob.write_bytes(b"json events\n")
    assert kinds(dist("push-object", repo, str(blob))) == ["pushed"]
    evs = dist("artifact", "push", f"{repo}-artifact:v1", str(blob))
    assert evs[-1]["event"] == "done"
    evs = dist("artifact", "pull", f"{repo}-artifact:v1", str(base / "pulled"))
    assert evs[-1]["event"] == "done" and len(evs[-1]["files"]) == 1
    evs = dist("attach", ref, str(blob), "--artifact-type", "application/vnd.example.note")
    assert evs[-1]["event"] == "done"
    (found,) = dist("referrers", ref)
    assert found["event"] == "referrers" and len(found["referrers"]) == 1
    assert kinds(dist("login", registry.host, "-u", "u:p")) == ["login"]
    assert kinds(dist("logout", registry.host)) == ["logout"]


def test_transfer_commands_stream_and_close_with_done(
    world: tuple[Dist, str, Path], registry: Registry
) -> None:
    dist, repo, base = world
    ref = f"{repo}:v1"
    for command in ("fetch", "pull"):
        evs = dist(command, ref)
        assert evs[-1]["event"] == "done" and evs[-1]["name"] == ref
        # The first fetches everything, the second finds it all there.
        assert {"start", "fetched"} <= set(kinds(evs)) or set(kinds(evs)) == {"exists", "done"}
        assert {e["kind"] for e in evs if e["event"] == "fetched"} <= {
            "manifest",
            "config",
            "layer",
        }
    evs = dist("unpack", ref, str(base / "rootfs"))
    assert evs[-1]["event"] == "done" and "applied" in kinds(evs)
    evs = dist("push", ref, f"{repo}-pushed:v1")
    assert evs[-1]["event"] == "done" and "pushed" in kinds(evs)
    evs = dist("copy", ref, f"{repo}-copied:v1")
    assert evs[-1]["event"] == "done" and "pushed" in kinds(evs)
    digests = [e["digest"] for e in dist("content", "ls")]
    evs = dist(
        "fetch-object", "--stdin", "-o", str(base / "objects"), ref,
        input="\n".join(digests[:2]).encode(),
    )  # fmt: skip
    assert kinds(evs) == ["fetched", "fetched"] and all("path" in e for e in evs)


def test_store_commands(world: tuple[Dist, str, Path]) -> None:
    dist, repo, base = world
    ref = f"{repo}:v1"
    dist("pull", ref)
    images = dist("images", "ls")
    assert set(kinds(images)) == {"image"} and ref in [i["name"] for i in images]
    assert kinds(dist("images", "inspect", ref)) == ["image"]
    blobs = dist("content", "ls")
    assert set(kinds(blobs)) == {"blob"}
    assert kinds(dist("content", "active")) == []
    digest = blobs[0]["digest"]
    assert kinds(dist("content", "label", digest, "a=b")) == ["labeled"]
    assert kinds(dist("content", "verify")) == ["verified"]
    assert kinds(dist("content", "prune")) == ["pruned"]
    assert kinds(dist("content", "ingest", "k1", input=b"ingested\n")) == ["ingested"]
    new = dist("content", "ls")
    extra = {b["digest"] for b in new} - {b["digest"] for b in blobs}
    assert kinds(dist("content", "rm", *extra)) == ["removed"]
    layout = base / "layout"
    assert kinds(dist("export", ref, str(layout))) == ["exported"]
    assert kinds(dist("import", str(layout), "--name", f"{repo}-imported")) == ["imported"]
    assert kinds(dist("images", "rm", ref, f"{repo}-imported:v1")) == ["removed", "removed"]
    assert kinds(dist("images", "rm", ref)) == ["removed"]
    layer = base / "layer.tar.gz"
    layer.write_bytes(build_layer({"hello": b"hi\n"}).blob.data)
    (base / "applied").mkdir()
    assert kinds(dist("apply", str(base / "applied"), str(layer))) == ["applied"]


def test_errors_are_one_event_on_stderr(world: tuple[Dist, str, Path]) -> None:
    dist, repo, _ = world
    (err,) = dist("resolve", f"{repo}:no-such-tag", ok=False)
    assert err["error"] == "NotFound" and "not found" in err["message"]
    (err,) = dist("resolv", repo, ok=False)
    assert err["error"] == "UsageError" and err["exitCode"] == 2
    assert "did you mean 'resolve'" in err["message"]
    (err,) = dist("images", "inspect", "nosuch/name:1", ok=False)
    assert err["error"] == "NotFound"


def test_error_kinds_are_a_closed_documented_set(tmp_path: Path) -> None:
    """``error`` is one of the schema's kinds: the public classes of
    ocidist.errors (an error raised as a subclass defined elsewhere, or a
    private one, reports its nearest public ancestor), UsageError, OSError,
    Interrupted. A new error class must be added to the schema."""
    import inspect

    from ocidist import errors

    public = {
        name
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.DistError) and not name.startswith("_")
    }
    kinds = SCHEMA["$defs"]["error"]["properties"]["error"]["enum"]
    assert sorted(kinds) == sorted(public | {"UsageError", "OSError", "Interrupted"})

    # A layer that ends inside an entry: raised inside the applier as a
    # private subclass of ArchiveError.
    info = tarfile.TarInfo("a")
    info.size = 5000
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(info, io.BytesIO(b"x" * 5000))
    (tmp_path / "cut.tar").write_bytes(buf.getvalue()[:2048])
    (tmp_path / "dir").mkdir()
    proc = run_dist("--json", "apply", str(tmp_path / "dir"), str(tmp_path / "cut.tar"))
    (err,) = events(proc, "stderr")
    assert err["error"] == "ArchiveError" and "truncated" in err["message"], err


def test_warnings_are_events_under_json(tmp_path: Path) -> None:
    """`dist --json apply` of a layer whose xattr cannot be set: the warning
    is a ``warning`` event on stderr, its entry name JSON-escaped once."""
    name = "f\x1b[31m"
    info = tarfile.TarInfo(name)
    info.size = 1
    info.pax_headers = {"SCHILY.xattr.bogus.x": "v"}  # no such namespace: EOPNOTSUPP
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "x.tar").write_bytes(buf.getvalue())
    (tmp_path / "dir").mkdir()
    proc = run_dist("--json", "apply", str(tmp_path / "dir"), str(tmp_path / "x.tar"))
    assert proc.returncode == 0, proc.stderr
    assert kinds(events(proc)) == ["applied"]
    (warning,) = events(proc, "stderr")
    assert warning["event"] == "warning", warning
    assert warning["message"].startswith(f"{name}: xattr bogus.x: "), warning
    assert b"\\u001b" in proc.stderr  # escaped by JSON, and only by it


def test_login_password_warning_is_an_event(
    world: tuple[Dist, str, Path], registry: Registry
) -> None:
    dist, _, _ = world
    proc = run_dist(
        "--json", "--root", str(dist.root), "login", registry.host, "-u", "u", "--password", "p",
        env=dist.env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert kinds(events(proc)) == ["login"]
    (warning,) = events(proc, "stderr")
    assert warning["event"] == "warning" and "--password-stdin" in warning["message"]


def test_every_command_is_checked() -> None:
    """Runs last in this module (pytest keeps file order): every command the
    parser has either printed JSON above or is listed as not JSON."""
    if not COVERED:
        pytest.skip("run with the rest of this module")
    missing = _commands() - COVERED - set(NOT_JSON)
    assert not missing, f"add these commands to tests/test_json_events.py: {sorted(missing)}"
    assert set(COMMANDS) and all(
        any(c.split()[0] == n for c in _commands()) for names in COMMANDS.values() for n in names
    )
