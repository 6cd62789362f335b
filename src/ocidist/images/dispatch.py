"""Walk an image graph with a bounded pool of threads.

A handler does the work for one descriptor (fetch it, say) and returns the
children to visit next. Each digest is handled once even when several
manifests name it. Manifests and indexes go before blobs (they open up the
graph), and blobs largest first (the long pole starts early). The first
failure stops the walk: nothing new starts, running work finishes, and the
error is raised to the caller.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Iterable

from ocidist.descriptor import Descriptor, is_manifest_or_index

Handler = Callable[[Descriptor], list[Descriptor]]


def _priority(desc: Descriptor) -> tuple[int, int]:
    return (0 if is_manifest_or_index(desc.media_type) else 1, -desc.size)


def dispatch(handler: Handler, roots: Iterable[Descriptor], *, concurrency: int = 4) -> None:
    lock = threading.Condition()
    heap: list[tuple[tuple[int, int], int, Descriptor]] = []
    seen: set[str] = set()
    counter = itertools.count()
    running = 0
    failure: list[BaseException] = []

    def push(desc: Descriptor) -> None:
        key = str(desc.digest)
        if key in seen:
            return
        seen.add(key)
        heapq.heappush(heap, (_priority(desc), next(counter), desc))

    for r in roots:
        push(r)

    def worker() -> None:
        nonlocal running
        while True:
            with lock:
                while not heap and running and not failure:
                    lock.wait()
                if failure or not heap:
                    lock.notify_all()
                    return
                _, _, desc = heapq.heappop(heap)
                running += 1
            try:
                children = handler(desc)
            except BaseException as e:  # re-raised in the caller's thread
                with lock:
                    failure.append(e)
                    running -= 1
                    lock.notify_all()
                return
            with lock:
                for c in children:
                    push(c)
                running -= 1
                lock.notify_all()

    threads = [
        threading.Thread(target=worker, name=f"dispatch-{i}", daemon=True)
        for i in range(max(1, concurrency))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failure:
        raise failure[0]
