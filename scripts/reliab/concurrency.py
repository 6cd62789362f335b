"""Many ``dist fetch`` processes pulling overlapping images into one root at
once. All must succeed, the store must verify, and no process may download
a blob more than once (counted at the proxy: requests and body bytes per
blob, against the number of processes whose image holds it)."""

from __future__ import annotations

import random
import time

from tests.harness import BuiltImage, build_image, build_layer

from reliab.env import Env, corrupt_blobs, finish, lost_objects
from reliab.network import complete
from reliab.outcome import Trial, classify

PROCESSES = 8
IMAGES = 4


def overlapping_images(seed: int, layer_size: int) -> list[BuiltImage]:
    """Image j has the shared layer 0 plus two of five others (each layer is
    in two images): every blob is wanted by several processes."""
    rng = random.Random(seed)
    pool = [build_layer({f"data/l{k}": rng.randbytes(layer_size)}) for k in range(6)]
    return [
        build_image(
            [pool[0], pool[1 + j], pool[1 + (j + 1) % 5]],
            config={"config": {"Labels": {"j": str(j)}}},
        )
        for j in range(IMAGES)
    ]


def concurrent_pulls(env: Env, rng: random.Random, i: int) -> list[Trial]:
    kind = f"{PROCESSES} concurrent pulls, one root"
    env.proxy.clear()
    names = [f"overlap{j % IMAGES}" for j in range(PROCESSES)]
    rng.shuffle(names)
    root = env.new_dir("root")
    start = time.monotonic()
    procs = [env.spawn("-q", "fetch", env.ref(n), root=root) for n in names]
    runs = [finish(p, start, 120) for p in procs]
    trials = []
    for name, run in zip(names, runs, strict=True):
        outcome = classify(run, complete(env, name, root))
        note = name if outcome != "unclean" else f"{name}: {run.summary()}"
        trials.append(Trial(kind, outcome, 0, 0, note))
    bad = corrupt_blobs(root)
    lost = lost_objects(root, set(), {env.ref(n): env.images[n] for n in set(names)})
    trials[0].corrupted, trials[0].lost = len(bad), len(lost)
    if bad or lost:
        trials[0].note += f"; corrupt {bad}; lost {lost}"
    # Each blob at most once per process that wanted it.
    wanted: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for n in names:
        for dgst, blob in env.images[n].blobs().items():
            wanted[dgst] = wanted.get(dgst, 0) + 1
            sizes[dgst] = blob.size
    for dgst, wanting in wanted.items():
        gets = env.proxy.count("GET", f"/blobs/{dgst}$")
        sent = sum(v for k, v in env.proxy.bytes_sent.items() if k.endswith(dgst))
        if gets > wanting or sent > wanting * sizes[dgst]:
            trials[0].outcome = "unclean"
            trials[0].note += f"; {dgst[:19]}: {gets} GETs, {sent} bytes for {wanting} processes"
    return trials
