"""Deterministic payloads: 64 KiB blocks, each stamped with its index so that a dropped,
repeated or reordered block changes the hash."""

from __future__ import annotations

import hashlib


_BLOCK_SIZE = 64 * 1024
_BASE_BLOCK = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest()
                       for i in range(_BLOCK_SIZE // 32))


def pattern_chunks(n: int, piece: int = _BLOCK_SIZE):
    """Yield the first n bytes of the deterministic payload in pieces of at most `piece` bytes."""
    offset = 0
    while offset < n:
        index, within = divmod(offset, _BLOCK_SIZE)
        block = index.to_bytes(8, "big") + _BASE_BLOCK[8:]
        take = min(n - offset, _BLOCK_SIZE - within, piece)
        yield block[within:within + take]
        offset += take


def pattern_bytes(n: int) -> bytes:
    return b"".join(pattern_chunks(n))


_SHA_CACHE: dict[int, str] = {}


def pattern_sha256(n: int) -> str:
    if n not in _SHA_CACHE:
        h = hashlib.sha256()
        for c in pattern_chunks(n):
            h.update(c)
        _SHA_CACHE[n] = h.hexdigest()
    return _SHA_CACHE[n]
