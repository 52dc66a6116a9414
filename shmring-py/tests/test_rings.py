"""Rings from Python: creating, sending, receiving, errors, statistics."""

import array

import pytest

import shmring


@pytest.mark.parametrize("kind", ["spsc", "mpmc", "broadcast"])
def test_every_kind_round_trips_and_counts(name, kind):
    ring = shmring.Ring.create(name, kind=kind, max_message=64, wait="futex")
    assert ring.kind == kind and ring.was_created and ring.max_message == 64
    tx, rx = ring.producer(), ring.consumer()
    for i in range(100):
        tx.send(f"message {i}".encode(), timeout=1.0)
    got = [rx.recv(timeout=1.0) for _ in range(100)]
    assert got == [f"message {i}".encode() for i in range(100)]
    stats = ring.stats()
    assert (stats.kind, stats.messages_sent, stats.messages_received) == (kind, 100, 100)
    assert stats.bytes_sent == sum(len(m) for m in got)
    assert f"sent=100 ({stats.bytes_sent} B)" in repr(stats)
    roles = sorted((p.role, p.status) for p in ring.peers())
    assert roles == [("consumer", "attached"), ("producer", "attached")]


def test_opening_by_name_finds_the_kind(name):
    shmring.Ring.create(name, kind="mpmc", slots=16, max_message=32)
    found = shmring.Ring.open(name)
    assert (found.kind, found.max_message) == ("mpmc", 32)
    again = shmring.Ring.create(name, kind="mpmc", slots=16, max_message=32, exist_ok=True)
    assert not again.was_created


def test_errors_are_typed_and_say_what_rust_says(name):
    with pytest.raises(shmring.NotFound) as missing:
        shmring.Ring.open(name)
    assert missing.value.code == 1 and isinstance(missing.value, shmring.Error)
    assert f"no ring named {name}" in str(missing.value)
    with pytest.raises(shmring.InvalidName):
        shmring.Ring.create("no-slash")
    ring = shmring.Ring.create(name, capacity=4096)
    with pytest.raises(shmring.AlreadyExists):
        shmring.Ring.create(name, capacity=4096)
    with pytest.raises(shmring.InvalidArgument):
        shmring.Ring.create(name + "x", kind="spsc", slots=8)  # slots are MPMC's
    tx, rx = ring.producer(), ring.consumer()
    with pytest.raises(shmring.AlreadyAttached):
        ring.producer()
    with pytest.raises(shmring.WouldBlock):
        rx.try_recv()
    with pytest.raises(shmring.Timeout):
        rx.recv(timeout=0.02)
    with pytest.raises(shmring.MessageTooLarge) as big:
        tx.send(bytes(ring.max_message + 1))
    assert str(ring.max_message) in str(big.value)
    with pytest.raises(ValueError, match="timeout"):
        rx.recv(timeout=-1)
    with pytest.raises(ValueError, match="wait"):
        shmring.Ring.create(name + "y", wait="sometimes")


def test_recv_into_fills_writable_buffers_and_a_short_one_keeps_the_message(name):
    ring = shmring.Ring.create(name, capacity=4096)
    tx, rx = ring.producer(), ring.consumer()
    tx.send(b"0123456789")
    short = bytearray(4)
    with pytest.raises(shmring.BufferTooSmall):
        rx.recv_into(short)
    target = array.array("B", bytes(16))
    assert rx.recv_into(target) == 10
    assert target.tobytes()[:10] == b"0123456789"
    tx.send(b"abc")
    view = memoryview(bytearray(8))
    assert rx.recv_into(view[2:]) == 3 and bytes(view[2:5]) == b"abc"
    with pytest.raises((TypeError, BufferError, ValueError)):
        rx.recv_into(b"read-only bytes")


def test_batches_and_iteration_until_the_stream_closes(name):
    ring = shmring.Ring.create(name, kind="mpmc", slots=64, max_message=16)
    tx, rx = ring.producer(), ring.consumer()
    assert rx.try_recv_batch() == []
    assert tx.try_send_batch([b"a", b"bb", b"ccc"]) == 3
    assert rx.try_recv_batch(max=2) == [b"a", b"bb"]
    tx.send(b"dddd")
    tx.close()
    assert list(rx) == [b"ccc", b"dddd"]
    with pytest.raises(shmring.Closed):
        rx.recv()
    with pytest.raises(ValueError, match="closed"):
        tx.send(b"late")


def test_handles_are_context_managers(name):
    ring = shmring.Ring.create(name, capacity=4096)
    with ring.producer() as tx:
        tx.send(b"x")
    with ring.consumer() as rx:
        assert rx.recv() == b"x"
        with pytest.raises(shmring.Closed):
            rx.recv(timeout=1)
    # Both roles were given back: they can be taken again.
    ring.producer().close()


def test_unlink_removes_the_name(name):
    ring = shmring.Ring.create(name, capacity=4096)
    ring.unlink()
    with pytest.raises(shmring.NotFound):
        shmring.Ring.open(name)
    with pytest.raises(shmring.NotFound):
        shmring.unlink(name)


def test_a_full_ring_arms_the_producer_and_a_receive_makes_it_ready(name):
    import select

    ring = shmring.Ring.create(name, capacity=4096, wait="futex")
    tx, rx = ring.producer(), ring.consumer()
    sent = 0
    while tx.try_send_or_arm(bytes(1000)):
        sent += 1
    assert sent == 4
    assert select.select([tx], [], [], 0)[0] == []
    while True:
        try:
            rx.try_recv()
        except shmring.WouldBlock:
            break
    assert select.select([tx], [], [], 5)[0] == [tx]
    assert tx.try_send_or_arm(bytes(1000))


def test_broadcast_readers_each_get_every_message_and_a_lapped_one_is_told(name):
    ring = shmring.Ring.create(
        name, kind="broadcast", capacity=4096, max_message=64, max_readers=3, overflow="overwrite"
    )
    tx = ring.producer()
    live, audit = ring.reader(), ring.reader("audit", join="oldest")
    for i in range(10):
        tx.send(f"tick {i}".encode())
    assert [live.recv(timeout=1.0) for _ in range(10)] == [f"tick {i}".encode() for i in range(10)]
    assert audit.recv(timeout=1.0) == b"tick 0"
    # Overwrite: the producer laps `audit`, which learns exactly how much it missed.
    for i in range(10, 1000):
        tx.send(f"tick {i}".encode())
    with pytest.raises(shmring.Lagged) as lagged:
        audit.recv(timeout=1.0)
    first = int(audit.recv(timeout=1.0).split()[1])
    assert lagged.value.missed == first - 1 and lagged.value.code == 20
    stats = ring.stats()
    assert (stats.kind, stats.policy, stats.capacity) == ("broadcast", "overwrite", 4096)
    assert stats.messages_missed == lagged.value.missed
    names = {p.name for p in ring.peers()}
    assert "audit" in names
    audit_info = next(r for r in ring.readers() if r.name == "audit")
    assert (audit_info.status, audit_info.missed) == ("attached", lagged.value.missed)
    assert "name='audit'" in repr(audit_info) or 'name="audit"' in repr(audit_info)
    with pytest.raises(shmring.AlreadyAttached):
        ring.reader("audit")
    with pytest.raises(shmring.Incompatible):
        shmring.Ring.create(name + "-spsc", kind="spsc").reader()
    shmring.unlink(name + "-spsc")


def test_priority_lanes(name):
    ring = shmring.Ring.create(name, kind="mpmc", lanes=8, slots=16, max_message=32)
    assert ring.lanes == 8
    tx, rx = ring.producer(), ring.consumer()
    tx.send_priority(b"routine", 0)
    tx.try_send_priority(b"urgent", 7)
    tx.send_priority(b"middle", 4, timeout=1.0)
    rx.select_priorities(0, 4)
    assert rx.recv_priority(timeout=1.0) == (b"middle", 4)
    assert rx.recv_priority(timeout=1.0) == (b"routine", 0)
    with pytest.raises(shmring.WouldBlock):
        rx.try_recv()
    rx.select_priorities(0, 7)
    assert rx.recv_priority(timeout=1.0) == (b"urgent", 7)
    with pytest.raises(shmring.InvalidArgument, match="priority 8"):
        tx.try_send_priority(b"x", 8)
    plain = shmring.Ring.create(name + "-plain", capacity=4096)
    try:
        assert plain.lanes == 1
        with pytest.raises(shmring.InvalidArgument, match="one lane"):
            plain.producer().try_send_priority(b"x", 1)
    finally:
        plain.unlink()
