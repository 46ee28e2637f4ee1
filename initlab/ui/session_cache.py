"""A session's last few results of one kind (training runs, sweeps, spectra), the most recently
used last. Kept in `st.session_state`, never in a module global: Streamlit runs sessions as
threads of one process, and one session's results are not another's."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import streamlit as st


def entries(slot: str) -> OrderedDict[str, Any]:
    """The session's results under `slot`, by key (created empty on first use)."""
    if slot not in st.session_state:
        st.session_state[slot] = OrderedDict()
    return st.session_state[slot]


def cached(slot: str, key: str) -> Any | None:
    """The result kept for `key`, now the most recently used; None if there is none."""
    store = entries(slot)
    found = store.get(key)
    if found is not None:
        store.move_to_end(key)
    return found


def remember(slot: str, key: str, value: Any, most: int) -> None:
    """Keep `value` for `key`, forgetting the least recently used beyond `most`."""
    store = entries(slot)
    store[key] = value
    store.move_to_end(key)
    while len(store) > most:
        store.popitem(last=False)
