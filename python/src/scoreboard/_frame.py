"""The status frame: ``md5(status) [16 B] | len [u32 BE] | status``, as
Parallel::Scoreboard and the Rust crate write it, followed by slack readers ignore."""

from __future__ import annotations

import hashlib
import struct
from typing import Callable, Protocol


class _Digest(Protocol):
    def digest(self) -> bytes: ...


#: The md5 constructor. CPython's own takes half the time of OpenSSL's for a
#: status-sized input, where OpenSSL's per-call setup dominates; both give the same
#: digest.
md5: Callable[[bytes], _Digest]
try:
    from _md5 import md5  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:  # pragma: no cover - a Python built without it
    md5 = hashlib.md5

HEADER_LEN = 16 + 4

#: The length field of a frame (``u32`` big-endian), pre-built so a call is one C call.
pack_length: Callable[[int], bytes] = struct.Struct(">I").pack


class Undecodable(Exception):
    """A frame that is not (yet) a whole status."""


class Short(Undecodable):
    """Fewer bytes than a header: a file created but not written yet."""


class TooLong(Undecodable):
    """The length field is over the reader's cap."""

    def __init__(self, length: int) -> None:
        super().__init__(f"length field says {length} bytes")
        self.length = length


class Truncated(Undecodable):
    """The frame goes on past what was read."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"the frame needs {needed} bytes")
        self.needed = needed


class DigestMismatch(Undecodable):
    """The md5 does not match: a write was in progress (a torn frame)."""


def encode(status: bytes) -> bytes:
    """The frame for ``status``."""
    return md5(status).digest() + pack_length(len(status)) + status


def decode(data: bytes, max_len: int) -> bytes:
    """The status a frame at the start of ``data`` carries; raises :class:`Undecodable`."""
    if len(data) < HEADER_LEN:
        raise Short()
    (length,) = struct.unpack_from(">I", data, 16)
    if length > max_len:
        raise TooLong(length)
    end = HEADER_LEN + length
    if len(data) < end:
        raise Truncated(end)
    status = data[HEADER_LEN:end]
    if md5(status).digest() != data[:16]:
        raise DigestMismatch()
    return bytes(status)
