"""XXH64, the 64-bit xxHash, compiled: a digest of a tensor's bytes at memory speed.

Why: the warnings compare a scheme's initialized parameters with the earlier schemes' (are two
schemes one scheme under two names?) by digests, since the earlier models are gone by then.
SHA-256 read them at ~1.4 GB/s, 4 ms for the default page's 5 MB model, twice a run; XXH64
reads them several times faster. It is not a cryptographic hash, and need not be: the tensors
are the user's own, and two different ones collide with probability about 2**-64.

Without numba the same functions run as plain Python (slow, but correct).
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # plain Python: the same arithmetic
    numba = None

P1 = np.uint64(11400714785074694791)
P2 = np.uint64(14029467366897019727)
P3 = np.uint64(1609587929392839161)
P4 = np.uint64(9650029242287828579)
P5 = np.uint64(2870177450012600261)


def _jit(signature: str):  # a decorator
    return (lambda fn: fn) if numba is None else numba.njit(signature, cache=True, nogil=True)


@_jit("uint64(uint64, uint64)")
def _rotl(x, r):  # pragma: no cover - compiled
    return (x << r) | (x >> (np.uint64(64) - r))


@_jit("uint64(uint64, uint64)")
def _round(acc, lane):  # pragma: no cover - compiled
    return _rotl(acc + lane * P2, np.uint64(31)) * P1


@_jit("uint64(uint64, uint64)")
def _merge(h, acc):  # pragma: no cover - compiled
    return (h ^ _round(np.uint64(0), acc)) * P1 + P4


@_jit("uint64(uint8[::1], uint64[::1], int64)")
def _stripes(data, words, n):  # pragma: no cover - compiled
    """The 32-byte stripes' four accumulators, merged (inputs of 32 bytes or more)."""
    v1, v2 = P1 + P2, P2
    v3, v4 = np.uint64(0), np.uint64(0) - P1
    for i in range(0, n // 32 * 4, 4):
        v1 = _round(v1, words[i])
        v2 = _round(v2, words[i + 1])
        v3 = _round(v3, words[i + 2])
        v4 = _round(v4, words[i + 3])
    h = _rotl(v1, np.uint64(1)) + _rotl(v2, np.uint64(7))
    h += _rotl(v3, np.uint64(12)) + _rotl(v4, np.uint64(18))
    return _merge(_merge(_merge(_merge(h, v1), v2), v3), v4)


@_jit("uint64(uint8[::1], uint64[::1])")
def _xxh64(data, words):  # pragma: no cover - compiled
    """XXH64 with seed 0 of `data`; `words` is its whole 8-byte words (little-endian)."""
    n = data.size
    h = _stripes(data, words, n) if n >= 32 else P5
    h += np.uint64(n)
    i = n // 32 * 32
    while i + 8 <= n:
        h = _rotl(h ^ _round(np.uint64(0), words[i // 8]), np.uint64(27)) * P1 + P4
        i += 8
    if i + 4 <= n:
        four = np.uint64(0)
        for k in range(4):  # little-endian
            four |= np.uint64(data[i + k]) << np.uint64(8 * k)
        h = _rotl(h ^ (four * P1), np.uint64(23)) * P2 + P3
        i += 4
    while i < n:
        h = _rotl(h ^ (np.uint64(data[i]) * P5), np.uint64(11)) * P1
        i += 1
    h ^= h >> np.uint64(33)
    h *= P2
    h ^= h >> np.uint64(29)
    h *= P3
    return h ^ (h >> np.uint64(32))


def xxh64(data: np.ndarray) -> int:
    """XXH64 (seed 0) of a contiguous array's bytes."""
    raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if not raw.flags.writeable or raw.ctypes.data % 8:  # the kernels take writable, aligned
        raw = raw.copy()  # arrays (a fresh copy is both)
    words = raw[: raw.size // 8 * 8].view(np.uint64)  # little-endian on every supported CPU
    with np.errstate(over="ignore"):  # modular arithmetic, where it runs as plain Python
        return int(_xxh64(raw, words))
