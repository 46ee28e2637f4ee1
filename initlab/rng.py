"""The one place initlab touches PyTorch's global random generator.

A module's own default init (`reset_parameters`, a Hugging Face `_init_weights`) draws from the
global generator and takes no `generator=` argument, so a reproducible default init means
seeding it. Streamlit runs sessions as threads of one process: two threads seeding and drawing
at once would interleave their streams and build different weights from the same seed. One
process-wide lock makes seeded construction atomic; `fork_rng` hands the caller's own random
state back untouched afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Re-entrant: a custom factory may itself build a zoo model while the lock is held.
_GLOBAL_RNG = threading.RLock()


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Inside: torch's global CPU generator is seeded with `seed` and no other thread of this
    process seeds or restores it; outside: it is as the caller left it."""
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
