"""Reservations and reads in place: writes arrive, views cannot outlive the memory."""

import pytest

import shmring


def test_writes_through_a_reservation_arrive_intact(name):
    ring = shmring.Ring.create(name, capacity=1 << 16)
    tx, rx = ring.producer(), ring.consumer()
    for i in range(1000):
        payload = i.to_bytes(4, "little") * 8
        with tx.reserve(len(payload)) as view:
            assert not view.readonly and len(view) == len(payload)
            view[:] = payload
        with rx.read() as got:
            assert got.readonly and bytes(got) == payload


def test_commit_sends_a_prefix_and_an_exception_sends_nothing(name):
    ring = shmring.Ring.create(name, kind="mpmc", slots=16, max_message=64)
    tx, rx = ring.producer(), ring.consumer()
    reservation = tx.reserve(64)
    with reservation as view:
        view[:5] = b"hello"
        reservation.commit(5)
    assert rx.recv() == b"hello"
    with pytest.raises(RuntimeError):
        with tx.reserve(8) as view:
            view[:] = b"half way"
            raise RuntimeError("the writer failed")
    with pytest.raises(shmring.WouldBlock):
        rx.try_recv()
    with pytest.raises(ValueError, match="reserved"):
        tx.reserve(4).commit(5)


def test_a_view_used_after_release_raises(name):
    ring = shmring.Ring.create(name, capacity=4096)
    tx, rx = ring.producer(), ring.consumer()
    with tx.reserve(3) as written:
        written[:] = b"abc"
    with pytest.raises(ValueError):
        written[0] = 1
    with rx.read() as view:
        assert bytes(view) == b"abc"
    with pytest.raises(ValueError):
        bytes(view)
    with pytest.raises(ValueError):
        view[0]


def test_memory_still_viewed_is_never_freed(name):
    ring = shmring.Ring.create(name, capacity=4096)
    tx, rx = ring.producer(), ring.consumer()
    tx.send(b"kept")
    grant = rx.read()
    kept = memoryview(grant)
    with pytest.raises(BufferError):
        grant.release()
    with pytest.raises(BufferError):
        rx.close()
    assert bytes(kept) == b"kept"
    kept.release()
    grant.release()
    with pytest.raises(ValueError, match="already released"):
        grant.release()
    with pytest.raises(ValueError):
        memoryview(grant)
    rx.close()
