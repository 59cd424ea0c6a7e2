"""The informer's watch loop, branch by branch, on a scripted cluster (tests/scripted.py): no server needed.

Each test scripts what the API answers and checks what the loop did with it: which call came next and from which
resourceVersion, and what the cache holds. The loop's real-server behaviour is in test_sessions.py and
test_hostile_cluster.py; these pin down each branch on its own.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fluxmon.core.cluster import ClusterUnreachable
from fluxmon.core.errors import FluxmonError
from fluxmon.core.informer import ClusterCache, KindStatus, retry_delay
from fluxmon.core.objects import ObjectRef
from tests.flux_bodies import kustomization
from tests.scripted import STREAM_WITH_410_GONE, Answer, Call, ScriptedCluster, Stream, bookmark, event

WAIT_SECONDS = 10.0
KIND = "Kustomization"


def apps(resource_version: str, *, path: str = "./apps") -> dict[str, Any]:
    body = kustomization("apps", path=path)
    body["metadata"]["resourceVersion"] = resource_version
    return body


APPS = ObjectRef(kind=KIND, namespace="flux-system", name="apps")


@contextmanager
def informer(
    lists: list[Answer], streams: list[Stream], *, retries: list[tuple[type[FluxmonError], int]] | None = None
) -> Iterator[tuple[ClusterCache, ScriptedCluster]]:
    """A started cache of Kustomizations on a scripted cluster; with `retries`, the backoff policy only records
    (error, attempt) and waits not at all."""
    cluster = ScriptedCluster(lists={KIND: deque(lists)}, streams={KIND: deque(streams)})

    def record(error: FluxmonError, attempt: int) -> float:
        assert retries is not None
        retries.append((type(error), attempt))
        return 0.0

    cache = ClusterCache(cluster, (KIND,), retry=record if retries is not None else retry_delay)
    cache.start()
    try:
        yield cache, cluster
    finally:
        cache.stop()


def test_a_410_lists_again_at_once() -> None:
    with informer([("5", [apps("5")]), ("9", [apps("9", path="./apps-v2")])], [STREAM_WITH_410_GONE]) as (
        cache,
        cluster,
    ):
        calls = cluster.wait_for_calls(4)
        assert calls == [Call("list", KIND), Call("watch", KIND, "5"), Call("list", KIND), Call("watch", KIND, "9")]
        assert cache.wait_until(lambda: cache.objects().get(APPS) is not None, WAIT_SECONDS)
        assert cache.objects()[APPS].path == "./apps-v2"


def test_a_bookmark_moves_the_resource_version_and_nothing_else() -> None:
    with informer([("5", [apps("5")])], [[bookmark("7")], []]) as (cache, cluster):
        calls = cluster.wait_for_calls(3)
        assert calls[1:] == [Call("watch", KIND, "5"), Call("watch", KIND, "7")]  # resumed after the bookmark
        assert set(cache.objects()) == {APPS}
        _, structure = cache.snapshot()
        assert structure == 1  # the list; the bookmark changed nothing


def test_an_unknown_event_type_is_skipped_not_applied() -> None:
    """Only ADDED, MODIFIED and DELETED change the cache; anything else (a newer server's type) is passed over."""
    stranger = apps("8", path="./not-a-real-change")
    with informer([("5", [apps("5")])], [[event("MODIFIED", apps("6")), event("SYNCED", stranger)], []]) as (
        cache,
        cluster,
    ):
        calls = cluster.wait_for_calls(3)
        assert calls[2] == Call("watch", KIND, "6")  # what the stranger says is not taken, its version neither
        assert cache.objects()[APPS].path == "./apps"


def test_trouble_backs_off_counting_attempts_and_recovers() -> None:
    retries: list[tuple[type[FluxmonError], int]] = []
    down = ClusterUnreachable("cannot reach https://scripted.invalid: connection refused")
    with informer([down, down, ("5", [apps("5")])], [], retries=retries) as (cache, cluster):
        cluster.wait_for_calls(4)
        assert retries == [(ClusterUnreachable, 1), (ClusterUnreachable, 2)]
        assert cache.wait_until(lambda: cache.states()[KIND].status is KindStatus.SYNCED, WAIT_SECONDS)


def test_a_failed_try_is_reported_as_the_kind_s_state() -> None:
    retries: list[tuple[type[FluxmonError], int]] = []
    down = ClusterUnreachable("cannot reach https://scripted.invalid: connection refused")
    with informer([down], [], retries=retries) as (cache, cluster):
        cluster.wait_for_calls(2)
        state = cache.states()[KIND]
        assert (state.status, state.failures) == (KindStatus.UNREACHABLE, 1)
        assert "connection refused" in state.message


def test_wait_until_accepts_the_cache_s_own_accessors() -> None:
    """`settled` and `states` take the cache's lock; `wait_until` calls its predicate holding that lock."""
    with informer([("5", [apps("5")])], []) as (cache, cluster):
        cluster.wait_for_calls(2)
        results: list[bool] = []
        waiter = threading.Thread(
            target=lambda: results.extend(
                [
                    cache.wait_until(cache.settled, WAIT_SECONDS),
                    cache.wait_until(lambda: cache.states()[KIND].status is KindStatus.SYNCED, WAIT_SECONDS),
                ]
            ),
            name="test-wait-until",
            daemon=True,
        )
        waiter.start()
        waiter.join(WAIT_SECONDS)
        assert not waiter.is_alive(), "wait_until deadlocked on the cache's own lock"
        assert results == [True, True]
