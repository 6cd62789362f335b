"""`make demo`: a local registry, an image built here, and `dist` working on it.

Starts a CNCF Distribution registry on a free loopback port, builds a small
image and a multi-platform index (no internet), seeds the registry with
skopeo, then runs `dist` the way a user would and shows what it prints.
Everything it starts is stopped at the end, by PID.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.harness import Registry, multiplatform_index, push_image, simple_image  # noqa: E402

DIST = [sys.executable, "-m", "ocidist"]
BOLD, DIM, RESET = ("\x1b[1m", "\x1b[2m", "\x1b[0m") if sys.stdout.isatty() else ("", "", "")


def banner(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}")


def dist(*args: str, stdin: bytes | None = None, show: int = 40) -> bytes:
    """Run `dist ARGS`, echo the command and (up to ``show`` lines of) its output."""
    print(f"{DIM}${RESET} dist {shlex.join(args)}")
    proc = subprocess.run([*DIST, *args], input=stdin, capture_output=True, check=False)
    out = proc.stdout.decode(errors="replace").splitlines()
    for line in out[:show]:
        print(f"  {line}")
    if show and len(out) > show:
        print(f"  … ({len(out) - show} more lines)")
    for line in proc.stderr.decode(errors="replace").splitlines():
        print(f"  {DIM}{line}{RESET}")
    if proc.returncode != 0:
        raise SystemExit(f"demo: `dist {shlex.join(args)}` failed with exit {proc.returncode}")
    return proc.stdout


def main() -> int:
    for tool in ("skopeo", "docker-registry"):
        if shutil.which(tool) is None and not Path(f"/usr/bin/{tool}").exists():
            raise SystemExit(f"demo: {tool} is missing (make deps installs it)")
    work = Path(tempfile.mkdtemp(prefix="ocidist-demo-"))
    root = work / "store"
    try:
        banner("Starting a local registry (docker-registry 2.8) on a free loopback port")
        with Registry(work / "registry") as reg:
            print(f"  registry at {reg.url} (pid {reg.pid})")
            banner("Building images here and seeding them with skopeo")
            img = simple_image()
            idx = multiplatform_index()
            push_image(reg, "demo/hello", "1.0", img)
            push_image(reg, "demo/multi", "1.0", idx)
            print(f"  {reg.host}/demo/hello:1.0  {img.digest}  (3 layers)")
            print(f"  {reg.host}/demo/multi:1.0  {idx.digest}  (index of {len(idx.children)})")
            ref = f"{reg.host}/demo/hello:1.0"
            multi = f"{reg.host}/demo/multi:1.0"

            banner("Resolve: reference -> name + descriptor")
            dist("resolve", ref)
            dist("--json", "resolve", multi)

            banner("fetch-object: the manifest, byte-identical to the registry's copy")
            data = dist("fetch-object", ref, show=12)
            print(f"  sha256 of stdout: sha256:{hashlib.sha256(data).hexdigest()}")
            layer = img.manifest["layers"][0]
            blob = dist(
                "fetch-object", ref, layer["digest"], f"mediatype:{layer['mediaType']}", show=0
            )
            print(f"  layer: {len(blob)} bytes, sha256:{hashlib.sha256(blob).hexdigest()}")

            banner("Multi-fetch: object lines on stdin, verified files in a directory")
            lines = [img.manifest["config"]["digest"]] + [
                ly["digest"] for ly in img.manifest["layers"]
            ]
            dist(
                "fetch-object", "--stdin", "-o", str(work / "objects"), ref,
                stdin=("\n".join(lines) + "\n").encode(),
            )  # fmt: skip

            banner("Pull: whole images into a content store (all platforms of the index)")
            dist("--root", str(root), "pull", multi, "--all-platforms")
            dist("--root", str(root), "pull", ref)
            dist("--root", str(root), "images", "ls")
            dist("--root", str(root), "content", "verify")

            banner("Unpack into a fresh store: layers apply while later ones download")
            rootfs = work / "rootfs"
            dist("--root", str(work / "store2"), "unpack", ref, str(rootfs))
            for dirpath, dirnames, filenames in sorted(os.walk(rootfs)):
                dirnames.sort()
                rel = os.path.relpath(dirpath, rootfs)
                for f in sorted(filenames):
                    p = Path(dirpath) / f
                    kind = f"-> {os.readlink(p)}" if p.is_symlink() else f"{p.stat().st_size} B"
                    print(f"  /{'' if rel == '.' else rel + '/'}{f}  {kind}")

            banner("Errors are one line with an exit code")
            for args in (("resolve", f"{reg.host}/demo/nope:1.0"), ("resolve", "Not/A/Valid:Ref!")):
                print(f"{DIM}${RESET} dist {shlex.join(args)}")
                proc = subprocess.run([*DIST, *args], capture_output=True, text=True, check=False)
                print(f"  {proc.stderr.strip()}   (exit {proc.returncode})")
        banner("Registry stopped; demo done")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
