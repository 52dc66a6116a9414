"""Across processes and languages, with the GIL released and Ctrl-C honoured."""

import os
import signal
import subprocess
import threading
import time

import pytest

import shmring
from conftest import message

MILLION = 1_000_000
PEER_TIMEOUT = 300


def _run_peer(rust_peer, *args):
    return subprocess.Popen(
        [str(rust_peer), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(peer):
    try:
        out, err = peer.communicate(timeout=PEER_TIMEOUT)
    finally:
        if peer.poll() is None:
            peer.kill()
    assert peer.returncode == 0, err
    return out


@pytest.mark.parametrize("kind,count", [("spsc", MILLION), ("mpmc", 200_000)])
def test_python_producer_to_rust_and_c_consumers(name, peer, kind, count):
    ring = shmring.Ring.create(name, kind=kind, max_message=256, wait="futex")
    peer = _run_peer(peer, "recv", name, str(count))
    tx = ring.producer()
    for seq in range(count):
        tx.send(message(seq), timeout=30)
    assert _finish(peer).strip() == f"ok {count}"


@pytest.mark.parametrize("kind,count", [("spsc", MILLION), ("mpmc", 200_000)])
def test_rust_and_c_producers_to_python_consumer(name, peer, kind, count):
    ring = shmring.Ring.create(name, kind=kind, max_message=256, wait="futex")
    rx = ring.consumer()
    peer = _run_peer(peer, "send", name, str(count))
    for seq in range(count):
        got = rx.recv(timeout=30)
        if got != message(seq):
            pytest.fail(f"message {seq} differs: {got[:16]!r}")
    _finish(peer)
    with pytest.raises(shmring.Closed):
        rx.recv(timeout=10)


def test_zero_copy_reads_of_a_rust_stream(name, rust_peer):
    ring = shmring.Ring.create(name, capacity=1 << 16, wait="futex")
    rx = ring.consumer()
    peer = _run_peer(rust_peer, "send", name, "100000")
    for seq in range(100_000):
        with rx.read(timeout=30) as view:
            assert view == message(seq)
    _finish(peer)


def test_other_threads_run_while_one_waits(name):
    ring = shmring.Ring.create(name, capacity=4096, wait="futex")
    rx = ring.consumer()
    ticks = 0
    stop = threading.Event()

    def busy():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    worker = threading.Thread(target=busy)
    worker.start()
    try:
        with pytest.raises(shmring.Timeout):
            rx.recv(timeout=0.5)
    finally:
        stop.set()
        worker.join(timeout=10)
    # With the GIL held through the wait the worker would count almost nothing; it
    # counts hundreds of thousands in half a second of its own.
    assert ticks > 100_000, ticks


def test_a_second_thread_on_the_same_handle_is_told_not_blocked(name):
    ring = shmring.Ring.create(name, capacity=4096, wait="futex")
    rx = ring.consumer()
    errors = []
    waiting = threading.Thread(target=lambda: _swallow(rx, errors))
    waiting.start()
    time.sleep(0.2)
    with pytest.raises(RuntimeError, match="another thread"):
        rx.try_recv()
    waiting.join(timeout=10)
    assert errors == ["Timeout"]


def _swallow(rx, errors):
    try:
        rx.recv(timeout=1.0)
    except shmring.Timeout:
        errors.append("Timeout")


def test_ctrl_c_interrupts_a_blocked_receive_and_loses_nothing(name):
    ring = shmring.Ring.create(name, capacity=1 << 16, wait="futex")
    tx, rx = ring.producer(), ring.consumer()
    delays = []
    for _ in range(5):
        sent_at = []

        def interrupt():
            time.sleep(0.2)
            sent_at.append(time.monotonic())
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt).start()
        with pytest.raises(KeyboardInterrupt):
            rx.recv()
        delays.append(time.monotonic() - sent_at[0])
    for i in range(100):
        tx.send(i.to_bytes(4, "little"))
    assert [int.from_bytes(rx.recv(timeout=5), "little") for i in range(100)] == list(range(100))
    print(f"KeyboardInterrupt after SIGINT: {sorted(round(d * 1000, 1) for d in delays)} ms")
    assert max(delays) < 0.1, delays


def test_a_selector_waits_on_the_ring_and_a_pipe_together(name, rust_peer):
    import selectors

    ring = shmring.Ring.create(name, capacity=1 << 16, wait="futex")
    rx = ring.consumer()
    read_end, write_end = os.pipe()
    selector = selectors.DefaultSelector()
    selector.register(rx, selectors.EVENT_READ, "ring")
    selector.register(read_end, selectors.EVENT_READ, "pipe")
    peer = _run_peer(rust_peer, "send", name, "100000")
    os.write(write_end, b"x")
    seq, pipe_seen, sleeps = 0, False, 0
    done = False
    while not done:
        while True:
            try:
                got = rx.try_recv()
            except shmring.WouldBlock:
                if not rx.arm():
                    continue
                break
            except shmring.Closed:
                done = True
                break
            assert got == message(seq), seq
            seq += 1
        if done:
            break
        sleeps += 1
        events = selector.select(timeout=30)
        assert events, f"asleep 30 s with message {seq} due: a lost wake-up"
        for key, _ in events:
            if key.data == "pipe":
                pipe_seen = os.read(read_end, 1) == b"x"
                selector.unregister(read_end)
    _finish(peer)
    selector.close()
    os.close(read_end)
    os.close(write_end)
    assert seq == 100000 and pipe_seen
    print(f"selector loop: {seq} messages, {sleeps} waits")
