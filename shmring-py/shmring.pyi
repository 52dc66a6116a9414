"""Lock-free message rings in POSIX shared memory (type stubs for the `shmring` module)."""

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Literal

from typing_extensions import Buffer, Self

__version__: str

Kind = Literal["spsc", "mpmc", "broadcast"]
Wait = Literal["spin", "spin-then-yield", "spin-yield", "futex"]

class Ring:
    """A mapped ring; attach ends with `producer()` and `consumer()`."""

    @staticmethod
    def create(
        name: str,
        *,
        kind: Kind = "spsc",
        capacity: int | None = None,
        slots: int | None = None,
        max_message: int | None = None,
        max_peers: int | None = None,
        max_readers: int | None = None,
        overflow: Literal["lossless", "overwrite"] | None = None,
        lag_limit: int | None = None,
        lanes: int | None = None,
        wait: Wait = "spin-then-yield",
        telemetry: int = 0,
        group_access: bool = False,
        exist_ok: bool = False,
    ) -> Ring:
        """Creates the ring `name` ("/" then letters, digits, ".", "_", "-").

        SPSC takes `capacity` (bytes), MPMC `slots` and `max_peers`; a parameter the kind
        has no use for raises `InvalidArgument`. `exist_ok`: open it if it already exists
        with the same parameters."""
    @staticmethod
    def open(name: str, *, any_owner: bool = False) -> Ring:
        """Opens the ring `name`, whatever its kind."""
    @property
    def kind(self) -> Kind: ...
    @property
    def max_message(self) -> int:
        """Largest message payload in bytes."""
    @property
    def lanes(self) -> int:
        """Priority lanes (MPMC rings created with `lanes=`; 1 for the others)."""
    @property
    def was_created(self) -> bool: ...
    def producer(self) -> Producer:
        """Attaches a producing end (`AlreadyAttached` / `RegistryFull` if none is free)."""
    def consumer(self) -> Consumer:
        """Attaches a consuming end."""
    def reader(
        self, name: str | None = None, *, join: Literal["live", "oldest"] = "live"
    ) -> Consumer:
        """Broadcast rings: a reader from the live end or the oldest message, durable
        under `name` if given (it resumes where that name stopped)."""
    def forget_reader(self, name: str) -> bool:
        """Broadcast rings: forgets the durable reader `name`."""
    def readers(self) -> list[ReaderInfo]:
        """Broadcast rings: every reader record with its lag and counts."""
    def stats(self) -> Stats: ...
    def peers(self) -> list[Peer]: ...
    def unlink(self) -> None:
        """Removes the name; attached ends keep working."""

def unlink(name: str) -> None:
    """Removes the ring `name`."""

class Producer:
    """The writing end. Blocking calls release the GIL; Ctrl-C interrupts them."""

    def send(self, data: Buffer, timeout: float | None = None) -> None:
        """Sends one message, waiting while the ring is full (`Timeout` after `timeout` s)."""
    def try_send(self, data: Buffer) -> None:
        """Sends one message if it fits now (`WouldBlock` if not)."""
    def send_priority(self, data: Buffer, priority: int, timeout: float | None = None) -> None:
        """Sends with a priority (lane of an MPMC ring with `lanes=`; 0 elsewhere)."""
    def try_send_priority(self, data: Buffer, priority: int) -> None:
        """Sends with a priority if its lane has room now (`WouldBlock` if not)."""
    def try_send_or_arm(self, data: Buffer) -> bool:
        """True: sent; False: full and armed, wait for fileno() and call again."""
    def fileno(self) -> int:
        """The readiness descriptor (owned by the producer); `wait="futex"` rings."""
    def try_send_batch(self, messages: Sequence[bytes]) -> int:
        """Sends as many as fit now, published together; how many."""
    def reserve(self, size: int, timeout: float | None = None) -> Reservation:
        """Room for a message written in place: `with p.reserve(n) as view: ...`."""
    @property
    def max_message(self) -> int: ...
    def stats(self) -> Stats: ...
    def close(self) -> None:
        """Gives the role back: consumers see the end of the stream after the last message."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> bool: ...

class Consumer:
    """The reading end; iterating receives until the stream closes."""

    def recv(self, timeout: float | None = None) -> bytes:
        """The next message; `Closed` / `PeerDead` once the stream ended and was read."""
    def try_recv(self) -> bytes:
        """The next message if one is there now (`WouldBlock` if not)."""
    def recv_priority(self, timeout: float | None = None) -> tuple[bytes, int]:
        """The highest-priority message waiting and its priority."""
    def select_priorities(self, low: int, high: int) -> None:
        """Receive only priorities low..=high from now on (like msgrcv's type)."""
    def recv_into(self, buffer: Buffer, timeout: float | None = None) -> int:
        """Copies the next message into a writable buffer; its length. `BufferTooSmall`
        keeps the message."""
    def try_recv_batch(self, max: int = 64) -> list[bytes]:
        """Up to `max` messages there now (empty list: none)."""
    def fileno(self) -> int:
        """The readiness descriptor (owned by the consumer), for select / selectors /
        loop.add_reader; needs a `wait="futex"` ring."""
    def arm(self) -> bool:
        """True: empty and armed, wait for fileno(); False: something to receive now."""
    def read(self, timeout: float | None = None) -> ReadGrant:
        """The next message in place: `with c.read() as view: ...` (read-only)."""
    @property
    def max_message(self) -> int: ...
    def stats(self) -> Stats: ...
    def close(self) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *args: object) -> bool: ...

class Reservation(Buffer):
    """Ring memory reserved for one message; the `with` block gives a writable memoryview,
    committed at its end (cancelled if it raised)."""

    def commit(self, size: int | None = None) -> None:
        """Sends the first `size` bytes (all by default)."""
    def cancel(self) -> None:
        """Sends nothing."""
    def __len__(self) -> int: ...
    def __enter__(self) -> memoryview: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

class ReadGrant(Buffer):
    """A message read in place; the `with` block gives a read-only memoryview and frees the
    message at its end. A view used afterwards raises `ValueError`."""

    def release(self) -> None: ...
    def __len__(self) -> int: ...
    def __enter__(self) -> memoryview: ...
    def __exit__(self, *args: object) -> bool: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...

class Stats:
    kind: str
    max_message: int
    messages_in_flight: int
    messages_sent: int
    bytes_sent: int
    messages_received: int
    bytes_received: int
    producers: int
    consumers: int
    producers_waiting: int
    consumers_waiting: int
    producers_died: int
    consumers_died: int
    capacity: int | None
    slots: int | None
    policy: Literal["lossless", "overwrite"] | None
    messages_missed: int | None

class Peer:
    index: int
    role: Literal["producer", "consumer"] | None
    status: Literal["attached", "attached-dead", "closed", "dead", "unknown"]
    pid: int
    generation: int
    messages: int
    bytes: int
    name: str | None

class ReaderInfo:
    index: int
    name: str | None
    status: Literal["attached", "attached-dead", "closed", "dead", "unknown"]
    pid: int
    lag_bytes: int
    lag_messages: int
    delivered: int
    missed: int

class Error(Exception):
    """Every shmring error; `code` is the stable number (= the C status)."""

    code: int

class NotFound(Error): ...
class AlreadyExists(Error): ...
class PermissionDenied(Error): ...
class InvalidName(Error): ...
class InvalidArgument(Error): ...
class Incompatible(Error): ...
class Corrupted(Error): ...
class Uninitialized(Error): ...
class AlreadyAttached(Error): ...
class MessageTooLarge(Error): ...
class BufferTooSmall(Error): ...
class WouldBlock(Error): ...
class Timeout(Error): ...
class Closed(Error): ...
class PeerDead(Error): ...
class Io(Error): ...
class RegistryFull(Error): ...
class NoSpace(Error): ...
class Revoked(Error): ...
class Lagged(Error):
    missed: int

