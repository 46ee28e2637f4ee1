"""XXH64 (initlab.digest) against the published test values of xxHash, on every input length
around its 32-, 8- and 4-byte steps, and on tensors' bytes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from initlab import digest
from initlab.digest import xxh64
from initlab.gotchas import fingerprint

KNOWN = [  # XXH64, seed 0: the xxHash reference values
    (b"", 0xEF46DB3751D8E999),
    (b"a", 0xD24EC4F1A98C6E5B),
    (b"abc", 0x44BC2CF5AD770999),
    (b"Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1),
]


@pytest.mark.parametrize(("data", "want"), KNOWN)
def test_the_reference_values(data: bytes, want: int) -> None:
    assert xxh64(np.frombuffer(data, np.uint8)) == want


def test_every_byte_of_every_length_counts() -> None:
    """Lengths 0..80 cross the stripe, word and half-word steps: flipping any one byte, or
    dropping the last, changes the digest; an unaligned view digests like its copy."""
    base = np.random.default_rng(0).integers(0, 256, size=81, dtype=np.uint8)
    for n in range(81):
        data = base[:n].copy()
        h = xxh64(data)
        if n:
            assert xxh64(data[:-1]) != h
        for i in range(n):
            flipped = data.copy()
            flipped[i] ^= 1
            assert xxh64(flipped) != h
    assert xxh64(base[1:41]) == xxh64(base[1:41].copy())


def test_fingerprints_tell_models_apart_by_one_value() -> None:
    a = torch.nn.Linear(8, 8)
    b = torch.nn.Linear(8, 8)
    b.load_state_dict(a.state_dict())
    assert fingerprint(a) == fingerprint(b)
    with torch.no_grad():
        b.weight[3, 5] = torch.nextafter(b.weight[3, 5], torch.tensor(1.0))
    assert fingerprint(a) != fingerprint(b)
    half = torch.nn.Linear(8, 8).to(torch.bfloat16)  # no numpy dtype: digested as bytes
    assert len(fingerprint(half)) == 64


def test_the_plain_python_arithmetic_is_the_same() -> None:
    """Without numba the same functions run uncompiled (numba's py_func is that function)."""
    kernel = getattr(digest._xxh64, "py_func", digest._xxh64)
    data = np.frombuffer(KNOWN[3][0], np.uint8).copy()
    with np.errstate(over="ignore"):
        got = kernel(data, data[: data.size // 8 * 8].view(np.uint64))
    assert int(got) == KNOWN[3][1]
