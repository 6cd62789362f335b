"""A conformance suite every Store implementation passes.

Use it from a test module::

    suite = StoreSuite(lambda: LocalStore(tmpdir))
    for name in StoreSuite.CHECKS: getattr(suite, name)()

``factory`` must return a fresh, empty store on each call. Checks raise
``ConformanceError`` (an AssertionError) naming what the store got wrong; they
do not rely on ``assert`` statements, which ``python -O`` removes.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

from ocidist.content import Store
from ocidist.content.copy import copy_from, copy_to_writer, ingest
from ocidist.digest import Digest
from ocidist.errors import AlreadyExists, DigestMismatch, FailedPrecondition, NotFound


class ConformanceError(AssertionError):
    pass


def _eq(got: Any, want: Any, what: str) -> None:
    if got != want:
        raise ConformanceError(f"{what}: got {got!r}, want {want!r}")


def _within(t: float, lo: float, hi: float, what: str) -> None:
    if not lo <= t <= hi:
        raise ConformanceError(f"{what}: {t!r} is not between {lo!r} and {hi!r}")


def _raises(exc: type[BaseException], fn: Callable[[], Any], what: str) -> BaseException:
    try:
        fn()
    except exc as e:
        return e
    except BaseException as e:
        raise ConformanceError(
            f"{what}: raised {type(e).__name__}: {e}, want {exc.__name__}"
        ) from e
    raise ConformanceError(f"{what}: did not raise {exc.__name__}")


def _blob(n: int, seed: int = 0) -> bytes:
    # Not all one byte value: a store that drops or reorders chunks must fail.
    return bytes((i * 31 + seed) % 251 for i in range(n))


def _read(store: Store, dgst: Digest) -> bytes:
    with store.reader(dgst) as f:
        return f.read()


class StoreSuite:
    CHECKS = (
        "check_write_commit_read",
        "check_empty_blob",
        "check_wrong_digest_rejected",
        "check_wrong_size_rejected",
        "check_ingest_drops_mismatch",
        "check_times",
        "check_resume_after_close",
        "check_truncate",
        "check_already_exists",
        "check_abort",
        "check_labels",
        "check_walk_filter",
        "check_delete",
        "check_reader_seekable",
        "check_statuses",
        "check_locked_nowait",
        "check_locked_wait_then_exists",
        "check_copy_resume",
        "check_put_bytes",
        "check_put_bytes_concurrent",
    )

    def __init__(self, factory: Callable[[], Store]) -> None:
        self.factory = factory

    def run_all(self) -> None:
        for name in self.CHECKS:
            getattr(self, name)()

    def _put(self, store: Store, data: bytes, key: str = "put") -> Digest:
        dgst = Digest.from_bytes(data)
        w = store.writer(key, total=len(data), expected=dgst)
        try:
            w.write(data)
            w.commit(len(data), dgst)
        finally:
            w.close()
        return dgst

    def check_write_commit_read(self) -> None:
        store = self.factory()
        data = _blob(3 * (1 << 20) + 17)
        dgst = Digest.from_bytes(data)
        w = store.writer("k1", total=len(data), expected=dgst)
        view = memoryview(data)
        for i in range(0, len(data), 1 << 20):
            w.write(view[i : i + (1 << 20)])  # memoryview slices must be accepted
        _eq(w.status().offset, len(data), "offset after writes")
        _eq(w.digest(), dgst, "running digest")
        w.commit(len(data), dgst, {"a": "1"})
        w.close()  # after commit: harmless
        _eq(store.exists(dgst), True, "exists after commit")
        _eq(_read(store, dgst), data, "bytes read back")
        info = store.info(dgst)
        _eq((info.digest, info.size, dict(info.labels)), (dgst, len(data), {"a": "1"}), "info")
        _raises(NotFound, lambda: store.status("k1"), "status of a committed key")

    def check_empty_blob(self) -> None:
        store = self.factory()
        dgst = self._put(store, b"")
        _eq(_read(store, dgst), b"", "empty blob")

    def check_wrong_digest_rejected(self) -> None:
        store = self.factory()
        data = _blob(1000)
        wrong = Digest.from_bytes(b"something else")
        w = store.writer("bad", total=len(data))
        w.write(data)
        _raises(DigestMismatch, lambda: w.commit(len(data), wrong), "commit with a wrong digest")
        w.close()
        _eq(store.exists(wrong), False, "wrong digest visible")
        _eq(store.exists(Digest.from_bytes(data)), False, "bad ingest committed anyway")
        _eq(list(store.walk()), [], "walk after rejected commit")
        # The bytes stay under the key, as containerd keeps them: the next
        # writer may commit them under their own digest.
        w = store.writer("bad", total=len(data))
        _eq(w.status().offset, len(data), "offset of the next writer after a mismatch")
        w.commit(len(data), Digest.from_bytes(data))
        _eq(_read(store, Digest.from_bytes(data)), data, "bytes committed after a mismatch")

    def check_wrong_size_rejected(self) -> None:
        store = self.factory()
        data = _blob(100)
        dgst = Digest.from_bytes(data)
        w = store.writer("size")
        w.write(data)
        _raises(DigestMismatch, lambda: w.commit(99, dgst), "commit with a wrong size")
        w.close()  # a daemon's writer is closed by then: the stream ended
        _eq(store.exists(dgst), False, "committed despite a wrong size")
        # The bytes stayed: a right commit after a wrong one.
        w = store.writer("size")
        _eq(w.status().offset, 100, "offset after a wrong size")
        w.commit(100, dgst)
        w.close()
        _eq(_read(store, dgst), data, "blob after a wrong size then the right one")

    def check_ingest_drops_mismatch(self) -> None:
        store = self.factory()
        data = _blob(3000, seed=5)
        wrong = Digest.from_bytes(b"not it")
        _raises(
            DigestMismatch,
            lambda: ingest(store, "fetch-x", lambda o: io.BytesIO(data[o:]), len(data), wrong),
            "ingest of bytes that are not the digest",
        )
        # A fetch retried must start again, not resume into the same mismatch.
        _raises(NotFound, lambda: store.status("fetch-x"), "ingest left by a failed fetch")

    def check_times(self) -> None:
        """Times are the wall clock's (containerd's clients compare them with
        their own): created at commit, updated by a label change, and a
        resumed ingest says when it was last written."""
        store = self.factory()
        data = _blob(300, seed=11)
        dgst = Digest.from_bytes(data)
        before_start = time.time()
        w = store.writer("times", total=len(data), expected=dgst)
        after_start = time.time()
        st = w.status()
        _within(st.started_at, before_start, after_start, "started_at of a new ingest")
        _within(st.updated_at, before_start, after_start, "updated_at of a new ingest")
        before_write = time.time()
        w.write(data[:100])
        after_write = time.time()
        _within(w.status().updated_at, before_write, after_write, "updated_at after a write")
        w.close()
        time.sleep(0.02)  # a reopen that reported "now" would fall outside
        w = store.writer("times", total=len(data), expected=dgst)
        st = w.status()
        _within(st.started_at, before_start, after_start, "started_at after a reopen")
        _within(st.updated_at, before_write, after_write, "updated_at after a reopen")
        w.write(data[100:])
        before_commit = time.time()
        w.commit(len(data), dgst)
        after_commit = time.time()
        info = store.info(dgst)
        _within(info.created_at, before_commit, after_commit, "created_at")
        _within(info.updated_at, before_commit, after_commit, "updated_at at commit")
        for labels in ({"a": "1"}, {"a": ""}):
            before = time.time()
            store.update(dgst, labels)
            after = time.time()
            info = store.info(dgst)
            _within(info.updated_at, before, after, f"updated_at after labels {labels}")
            _within(info.created_at, before_commit, after_commit, "created_at after labels")
        put_before = time.time()
        small = store.put(b"small", Digest.from_bytes(b"small"))
        put_after = time.time()
        _eq(small, True, "put")
        info = store.info(Digest.from_bytes(b"small"))
        _within(info.created_at, put_before, put_after, "created_at of a put")

    def check_resume_after_close(self) -> None:
        store = self.factory()
        data = _blob(2_500_000, seed=7)
        dgst = Digest.from_bytes(data)
        w = store.writer("resume", total=len(data), expected=dgst)
        w.write(data[:1_000_001])
        w.close()
        st = store.status("resume")
        _eq((st.offset, st.total, st.expected), (1_000_001, len(data), dgst), "ingest status")
        w = store.writer("resume")
        st = w.status()
        _eq((st.offset, st.total), (1_000_001, len(data)), "resumed writer's status")
        w.write(data[1_000_001:])
        _eq(w.digest(), dgst, "digest continued over the resumed prefix")
        w.commit(len(data), dgst)
        _eq(_read(store, dgst), data, "resumed blob")

    def check_truncate(self) -> None:
        store = self.factory()
        w = store.writer("trunc")
        w.write(b"garbage")
        w.truncate(0)
        _eq(w.status().offset, 0, "offset after truncate(0)")
        w.write(b"good")
        w.commit(4, Digest.from_bytes(b"good"))
        _eq(_read(store, Digest.from_bytes(b"good")), b"good", "blob after truncate")

    def check_already_exists(self) -> None:
        store = self.factory()
        dgst = self._put(store, b"twice")
        _raises(AlreadyExists, lambda: store.writer("x", expected=dgst), "writer for existing")
        w = store.writer("other-key")
        w.write(b"twice")
        _raises(AlreadyExists, lambda: w.commit(5, dgst), "commit of existing content")
        w.close()
        _raises(NotFound, lambda: store.status("other-key"), "ingest left after AlreadyExists")

    def check_abort(self) -> None:
        store = self.factory()
        w = store.writer("ab")
        w.write(b"partial")
        w.close()
        store.abort("ab")
        _raises(NotFound, lambda: store.status("ab"), "status after abort")
        _raises(NotFound, lambda: store.abort("ab"), "abort of an unknown key")
        w = store.writer("ab")
        _eq(w.status().offset, 0, "offset after abort")
        _raises(FailedPrecondition, lambda: store.abort("ab"), "abort while a writer holds it")
        w.close()

    def check_labels(self) -> None:
        store = self.factory()
        dgst = self._put(store, b"labelled")
        _eq(dict(store.update(dgst, {"a": "1", "b": "2"}).labels), {"a": "1", "b": "2"}, "add")
        _eq(dict(store.update(dgst, {"a": "", "c": "3"}).labels), {"b": "2", "c": "3"}, "merge")
        _eq(dict(store.update(dgst, {"d": "4"}, replace=True).labels), {"d": "4"}, "replace")
        _eq(dict(store.info(dgst).labels), {"d": "4"}, "labels from info")
        missing = Digest.from_bytes(b"missing")
        _raises(NotFound, lambda: store.update(missing, {"a": "1"}), "labels of missing content")

    def check_walk_filter(self) -> None:
        store = self.factory()
        a = self._put(store, b"a" * 10, key="a")
        b = self._put(store, b"b" * 20, key="b")
        store.update(b, {"keep": "yes"})
        _eq({i.digest for i in store.walk()}, {a, b}, "walk")
        _eq([i.digest for i in store.walk(lambda i: "keep" in i.labels)], [b], "walk by label")
        _eq([i.digest for i in store.walk(lambda i: i.size < 15)], [a], "walk by size")

    def check_delete(self) -> None:
        store = self.factory()
        dgst = self._put(store, b"doomed")
        store.update(dgst, {"x": "y"})
        store.delete(dgst)
        _eq(store.exists(dgst), False, "exists after delete")
        _raises(NotFound, lambda: store.delete(dgst), "delete twice")
        _raises(NotFound, lambda: store.info(dgst), "info after delete")
        _raises(NotFound, lambda: store.reader(dgst), "reader after delete")
        # Labels went with the blob.
        self._put(store, b"doomed")
        _eq(dict(store.info(dgst).labels), {}, "labels of re-added content")

    def check_reader_seekable(self) -> None:
        store = self.factory()
        data = _blob(5000)
        dgst = self._put(store, data)
        with store.reader(dgst) as f:
            f.seek(4000)
            _eq(f.read(10), data[4000:4010], "read after seek")
            f.seek(-5, io.SEEK_END)
            _eq(f.read(), data[-5:], "read after seek from end")

    def check_statuses(self) -> None:
        store = self.factory()
        w1 = store.writer("s1", total=100)
        w1.write(b"x" * 10)
        w2 = store.writer("s2/with/slashes")
        w2.write(b"y" * 3)
        w2.close()
        got = {s.key: (s.offset, s.total) for s in store.list_statuses()}
        _eq(got, {"s1": (10, 100), "s2/with/slashes": (3, -1)}, "list_statuses")
        _eq(store.status("s2/with/slashes").offset, 3, "status")
        _raises(NotFound, lambda: store.status("nope"), "status of an unknown key")
        w1.close()

    def check_locked_nowait(self) -> None:
        store = self.factory()
        w = store.writer("lock")
        errors: list[BaseException] = []

        def other() -> None:
            try:
                store.writer("lock", wait=False).close()
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        w.close()
        _eq([type(e) for e in errors], [FailedPrecondition], "second writer without wait")
        store.writer("lock", wait=False).close()  # free again after close

    def check_locked_wait_then_exists(self) -> None:
        store = self.factory()
        data = b"shared content"
        dgst = Digest.from_bytes(data)
        w = store.writer("same", expected=dgst)
        w.write(data[:5])
        outcome: list[object] = []
        started = threading.Event()

        def other() -> None:
            started.set()
            try:
                store.writer("same", expected=dgst).close()
                outcome.append("opened")
            except BaseException as e:
                outcome.append(type(e))

        t = threading.Thread(target=other)
        t.start()
        started.wait(10)
        time.sleep(0.2)
        _eq(outcome, [], "second writer did not wait")
        w.write(data[5:])
        w.commit(len(data), dgst)
        t.join(10)
        _eq(outcome, [AlreadyExists], "waiting writer after the first committed")

    def check_copy_resume(self) -> None:
        store = self.factory()
        data = _blob(3_000_000, seed=3)
        dgst = Digest.from_bytes(data)
        w = store.writer("copy", total=len(data), expected=dgst)
        w.write(data[:1_234_567])
        w.close()
        opened_at: list[int] = []

        def open_at(offset: int) -> io.BytesIO:
            opened_at.append(offset)
            return io.BytesIO(data[offset:])

        w = store.writer("copy", total=len(data), expected=dgst)
        copy_from(w, open_at, len(data), dgst)
        w.close()
        _eq(opened_at, [1_234_567], "copy_from resumed at")
        _eq(_read(store, dgst), data, "copied blob")
        # A non-seekable whole-object stream: the held prefix is skipped.
        data2 = _blob(10_000, seed=9)
        dgst2 = Digest.from_bytes(data2)
        w = store.writer("copy2", expected=dgst2)
        w.write(data2[:4000])
        w.close()
        w = store.writer("copy2", expected=dgst2)
        copy_to_writer(w, io.BufferedReader(_NoSeek(data2)), len(data2), dgst2)
        w.close()
        _eq(_read(store, dgst2), data2, "copied from a pipe-like stream")

    def check_put_bytes(self) -> None:
        store = self.factory()
        data = _blob(5000, seed=7)
        dgst = Digest.from_bytes(data)
        _eq(store.put(data, dgst, {"a": "1", "gone": ""}), True, "first put")
        _eq(_read(store, dgst), data, "bytes read back after put")
        _eq(dict(store.info(dgst).labels), {"a": "1"}, "labels given to put")
        _eq(store.put(data, dgst), False, "put of present content")
        _eq(dict(store.info(dgst).labels), {"a": "1"}, "labels after a second put")
        wrong = Digest.from_bytes(b"not these bytes")
        _raises(DigestMismatch, lambda: store.put(data, wrong), "put, wrong digest")
        _eq(store.exists(wrong), False, "wrong digest visible after put")
        empty = Digest.from_bytes(b"")
        _eq(store.put(b"", empty), True, "put of the empty blob")
        _eq(_read(store, empty), b"", "empty blob after put")
        _eq(sorted(i.digest for i in store.walk()), sorted([dgst, empty]), "walk after puts")
        _eq(store.list_statuses(), [], "ingests left by put")

    def check_put_bytes_concurrent(self) -> None:
        store = self.factory()
        data = _blob(20000, seed=9)
        dgst = Digest.from_bytes(data)
        results: list[bool] = []
        errors: list[BaseException] = []

        def one() -> None:
            try:
                results.append(store.put(data, dgst))
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _eq(errors, [], "errors of concurrent puts")
        _eq(sorted(results), [False] * 7 + [True], "exactly one put commits")
        _eq(_read(store, dgst), data, "bytes after concurrent puts")


class _NoSeek(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        return self._src.readinto(buf)
