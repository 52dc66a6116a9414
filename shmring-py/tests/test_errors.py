"""Every error kind maps to its exception class; the ones a Python program can meet are
met here for real."""

import os
import signal
import subprocess

import pytest

import shmring

KINDS = [
    "NotFound", "AlreadyExists", "PermissionDenied", "InvalidName", "InvalidArgument",
    "Incompatible", "Corrupted", "Uninitialized", "AlreadyAttached", "MessageTooLarge",
    "BufferTooSmall", "WouldBlock", "Timeout", "Closed", "PeerDead", "Io", "RegistryFull",
    "NoSpace", "Revoked",
]  # in the order of their stable numbers, 1..=19 (= the C statuses)


def _segment(name):
    return f"/dev/shm/{name[1:]}"


def _raises(cls, code, call):
    with pytest.raises(cls) as caught:
        call()
    assert caught.value.code == code, caught.value
    return caught.value


def test_every_kind_has_a_class_under_error():
    for kind in KINDS:
        cls = getattr(shmring, kind)
        assert issubclass(cls, shmring.Error) and cls is not shmring.Error, kind
    assert issubclass(shmring.Error, Exception)


def test_damaged_foreign_and_unfinished_segments(name):
    shmring.Ring.create(name, kind="mpmc", slots=16, max_message=64)
    with open(_segment(name), "r+b") as f:
        f.seek(96)  # slot_count: no longer matches the segment's size
        f.write((64).to_bytes(8, "little"))
    err = _raises(shmring.Corrupted, 7, lambda: shmring.Ring.open(name))
    assert "slot" in str(err) or "size" in str(err), err
    with open(_segment(name), "r+b") as f:
        f.seek(12)  # ring_kind: one this build does not know (a newer build's?)
        f.write((99).to_bytes(4, "little"))
    err = _raises(shmring.Incompatible, 6, lambda: shmring.Ring.open(name))
    assert "ring kind 99" in str(err)
    with open(_segment(name), "w+b"):
        pass  # an empty file: a creator that died before writing anything
    _raises(shmring.Uninitialized, 8, lambda: shmring.Ring.open(name))


def test_someone_elses_ring_needs_any_owner(name):
    if os.geteuid() != 0:
        pytest.skip("giving the file to another user needs root")
    shmring.Ring.create(name, capacity=4096)
    os.chown(_segment(name), 12345, 12345)
    _raises(shmring.PermissionDenied, 3, lambda: shmring.Ring.open(name))
    assert shmring.Ring.open(name, any_owner=True).kind == "spsc"


def test_a_full_registry_and_a_ring_too_large_for_dev_shm(name):
    ring = shmring.Ring.create(name, kind="mpmc", slots=16, max_peers=2)
    ends = [ring.producer(), ring.consumer()]
    _raises(shmring.RegistryFull, 17, ring.consumer)
    free = os.statvfs("/dev/shm")
    too_big = 1 << max(30, (free.f_bavail * free.f_frsize).bit_length() + 1)
    err = _raises(
        shmring.NoSpace, 18, lambda: shmring.Ring.create(name + "-big", capacity=too_big)
    )
    assert "/dev/shm" in str(err)
    with pytest.raises(shmring.NotFound):
        shmring.Ring.open(name + "-big")  # nothing was left behind
    del ends


def test_a_killed_producer_ends_the_stream_with_peer_dead(name, rust_peer):
    ring = shmring.Ring.create(name, capacity=4096, wait="futex")
    rx = ring.consumer()
    peer = subprocess.Popen([str(rust_peer), "send", name, str(10**9)])
    try:
        rx.recv(timeout=30)  # it is sending
        peer.send_signal(signal.SIGKILL)
        peer.wait(timeout=30)
        with pytest.raises(shmring.PeerDead) as caught:
            while True:
                rx.recv(timeout=10)  # everything it published, then PeerDead
        assert caught.value.code == 15
        _raises(shmring.PeerDead, 15, rx.try_recv)  # final, like Closed
    finally:
        if peer.poll() is None:
            peer.kill()
