"""Shared fixtures: unique ring names removed after each test, and the Rust peer."""

import itertools
import os
import pathlib
import subprocess
import zlib

import pytest

import shmring

_counter = itertools.count()
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def name():
    """A ring name no other test or run uses; the ring is unlinked afterwards."""
    ring_name = f"/shmring-pytest-{os.getpid()}-{next(_counter)}"
    yield ring_name
    try:
        shmring.unlink(ring_name)
    except shmring.NotFound:
        pass


@pytest.fixture(scope="session")
def c_peer():
    """Path of the C peer (`shmring-ffi/examples/checksummed.c`, built by test.sh)."""
    path = os.environ.get("SHMRING_C_CHECKSUMMED")
    if not path:
        pytest.fail("SHMRING_C_CHECKSUMMED is not set: run shmring-py/test.sh")
    return pathlib.Path(path)


@pytest.fixture(params=["rust", "c"])
def peer(request):
    """The Rust peer, then the C peer."""
    return request.getfixturevalue(f"{request.param}_peer")


@pytest.fixture(scope="session")
def rust_peer():
    """Path of the Rust peer (`cargo build --release -p shmring --example checksummed`)."""
    path = pathlib.Path(
        os.environ.get(
            "SHMRING_CHECKSUMMED", REPO / "target" / "release" / "examples" / "checksummed"
        )
    )
    if not path.exists():
        subprocess.run(
            ["cargo", "build", "--release", "-p", "shmring", "--example", "checksummed"],
            cwd=REPO,
            check=True,
            timeout=600,
        )
    return path


PATTERN = bytes(i % 251 for i in range(2 * 251))


def message(seq: int) -> bytes:
    """Message `seq` in the Rust peer's format (shmring/examples/checksummed.rs)."""
    length = seq * 7919 % 120
    start = seq % 251
    head = seq.to_bytes(8, "little") + PATTERN[start : start + length]
    return head + zlib.crc32(head).to_bytes(4, "little")
