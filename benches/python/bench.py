"""shmring from Python beside what a Python program would use instead, in one run.

Round trip (ping-pong of an 8 B or 64 B message between two processes: p50 and p99) and
one-way throughput (64 B messages, the consumer copies every one out) for:

- shmring (this package; futex waits, the receiver spins 20 us before sleeping)
- multiprocessing.Pipe (send_bytes / recv_bytes)
- multiprocessing.Queue (put / get: pickled bytes through a pipe and a feeder thread)
- multiprocessing.shared_memory + Queue (payload in a shared slot array; slot numbers go
  through one queue and come back as credits through another)
- iceoryx2 (PyPI iceoryx2 0.10, if installed: publish-subscribe of a fixed 8 B / 64 B
  ctypes array, the receiver polls `receive()`)

Usage: python benches/python/bench.py [--reps 3] [--round-trips 20000] [--messages 200000]
Each figure is the median over the repetitions, which run interleaved.
"""

import argparse
import ctypes
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing import shared_memory

import shmring

try:
    import iceoryx2 as iox2
except ImportError:  # optional
    iox2 = None

WARMUP = 2000


# --- transports: each gives (sender, receiver) callables for one process's side --------


class Shmring:
    name = "shmring"

    def __init__(self, size):
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        self.names = (f"/shmring-pybench-a-{tag}", f"/shmring-pybench-b-{tag}")
        for n in self.names:
            shmring.Ring.create(n, capacity=1 << 20, wait="futex")

    def side(self, parent):
        a, b = (shmring.Ring.open(n) for n in self.names)
        tx, rx = (a.producer(), b.consumer()) if parent else (b.producer(), a.consumer())
        self._keep = (a, b, tx, rx)
        return tx.send, rx.recv

    def close(self):
        for n in self.names:
            shmring.unlink(n)


class Pipe:
    name = "multiprocessing.Pipe"

    def __init__(self, size):
        self.ends = mp.Pipe(duplex=True)

    def side(self, parent):
        conn = self.ends[0] if parent else self.ends[1]
        return conn.send_bytes, conn.recv_bytes

    def close(self):
        pass


class Queue:
    name = "multiprocessing.Queue"

    def __init__(self, size):
        self.queues = (mp.Queue(), mp.Queue())

    def side(self, parent):
        out, back = self.queues if parent else self.queues[::-1]
        return out.put, back.get

    def close(self):
        pass


class SharedMemoryQueue:
    name = "shared_memory + Queue"
    SLOTS = 1024

    def __init__(self, size):
        self.size = size
        self.memory = [shared_memory.SharedMemory(create=True, size=self.SLOTS * size) for _ in range(2)]
        # Per direction: slot numbers to read, and credits (slots free to write).
        self.ready = (mp.Queue(), mp.Queue())
        self.free = (mp.Queue(), mp.Queue())
        for q in self.free:
            for slot in range(self.SLOTS):
                q.put(slot)

    def side(self, parent):
        out, back = (0, 1) if parent else (1, 0)
        size = self.size
        out_buf = self.memory[out].buf
        back_buf = self.memory[back].buf
        out_ready, out_free = self.ready[out], self.free[out]
        back_ready, back_free = self.ready[back], self.free[back]

        def send(msg):
            slot = out_free.get()
            out_buf[slot * size : slot * size + len(msg)] = msg
            out_ready.put((slot, len(msg)))

        def recv():
            slot, n = back_ready.get()
            msg = bytes(back_buf[slot * size : slot * size + n])
            back_free.put(slot)
            return msg

        return send, recv

    def close(self):
        for m in self.memory:
            m.close()
            m.unlink()


class Iceoryx2:
    name = "iceoryx2 0.10"

    def __init__(self, size):
        self.size = size
        tag = f"{os.getpid()}-{time.monotonic_ns()}"
        self.services = (f"shmring-bench/a/{tag}", f"shmring-bench/b/{tag}")

    def side(self, parent):
        payload = ctypes.c_uint8 * self.size
        node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)

        def service(name):
            return (
                node.service_builder(iox2.ServiceName.new(name))
                .publish_subscribe(payload)
                .max_publishers(1)
                .max_subscribers(1)
                .subscriber_max_buffer_size(256)
                .history_size(0)
                .enable_safe_overflow(False)
                .open_or_create()
            )

        a, b = service(self.services[0]), service(self.services[1])
        out, back = (a, b) if parent else (b, a)
        # Lossless, as every other transport here: a full subscriber makes the send wait.
        publisher = (
            out.publisher_builder()
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
            .create()
        )
        subscriber = back.subscriber_builder().create()
        self._keep = (node, a, b, publisher, subscriber)
        size = self.size

        def send(msg):
            while True:
                try:
                    sample = publisher.loan_uninit()
                    break
                except iox2.LoanError:
                    continue
            ctypes.memmove(sample.payload_ptr, msg, len(msg))
            sample.assume_init().send()

        def recv():
            while True:
                sample = subscriber.receive()
                if sample is not None:
                    msg = ctypes.string_at(sample.payload_ptr, size)
                    sample.delete()
                    return msg

        # Both sides must exist before either sends (no history): wait for the peer.
        deadline = time.monotonic() + 10
        while out.dynamic_config.number_of_subscribers == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        return send, recv

    def close(self):
        pass


TRANSPORTS = [Shmring, Pipe, Queue, SharedMemoryQueue] + ([Iceoryx2] if iox2 else [])


# --- measurements ------------------------------------------------------------------------


def _echo(transport, size, count, started):
    send, recv = transport.side(parent=False)
    started.set()
    for _ in range(count):
        send(recv())
    # A forked child ends with os._exit: drop the ends now, or nothing closes them.
    del send, recv
    transport.__dict__.pop("_keep", None)


def round_trip(cls, size, count):
    transport = cls(size)
    started = mp.Event()
    child = mp.Process(target=_echo, args=(transport, size, WARMUP + count, started))
    child.start()
    send, recv = transport.side(parent=True)
    started.wait(30)
    msg = bytes(size)
    times = []
    for i in range(WARMUP + count):
        t0 = time.perf_counter_ns()
        send(msg)
        recv()
        if i >= WARMUP:
            times.append(time.perf_counter_ns() - t0)
    child.join(60)
    del send, recv
    transport.__dict__.pop("_keep", None)
    transport.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def _drain(transport, size, count, started, result):
    _, recv = transport.side(parent=False)
    started.set()
    recv()
    t0 = time.perf_counter()
    for _ in range(count - 1):
        recv()
    result.put((count - 1) / (time.perf_counter() - t0))
    del recv
    transport.__dict__.pop("_keep", None)


def throughput(cls, size, count):
    transport = cls(size)
    started, result = mp.Event(), mp.Queue()
    child = mp.Process(target=_drain, args=(transport, size, count, started, result))
    child.start()
    send, _ = transport.side(parent=True)
    started.wait(30)
    msg = bytes(size)
    for _ in range(count):
        send(msg)
    rate = result.get(timeout=300)
    child.join(60)
    del send
    transport.__dict__.pop("_keep", None)
    transport.close()
    return rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=20000)
    parser.add_argument("--messages", type=int, default=200000)
    args = parser.parse_args()
    mp.set_start_method("fork")
    rtt = {(t.name, s): [] for t in TRANSPORTS for s in (8, 64)}
    rate = {t.name: [] for t in TRANSPORTS}
    for rep in range(args.reps):
        for cls in TRANSPORTS:
            for size in (8, 64):
                rtt[(cls.name, size)].append(round_trip(cls, size, args.round_trips))
            rate[cls.name].append(throughput(cls, 64, args.messages))
            print(f"rep {rep + 1}/{args.reps}: {cls.name} done", file=sys.stderr)

    med = lambda xs: statistics.median(xs)  # noqa: E731
    base = {s: med([p50 for p50, _ in rtt[("shmring", s)]]) for s in (8, 64)}
    base_rate = med(rate["shmring"])
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.reps} reps, "
          f"{args.round_trips} round trips, {args.messages} messages per stream\n")
    print("| transport | 8 B RTT p50 / p99 | 64 B RTT p50 / p99 | 64 B one-way | RTT p50 vs shmring (8 B) | throughput vs shmring |")
    print("|---|--:|--:|--:|--:|--:|")
    for cls in TRANSPORTS:
        cells = []
        for size in (8, 64):
            p50 = med([a for a, _ in rtt[(cls.name, size)]])
            p99 = med([b for _, b in rtt[(cls.name, size)]])
            cells.append(f"{p50 / 1000:.1f} / {p99 / 1000:.1f} µs")
        r = med(rate[cls.name])
        p50_8 = med([a for a, _ in rtt[(cls.name, 8)]])
        print(f"| {cls.name} | {cells[0]} | {cells[1]} | {r / 1e3:.0f} k msgs/s | "
              f"{p50_8 / base[8]:.2f}× | {r / base_rate:.2f}× |")


if __name__ == "__main__":
    main()
