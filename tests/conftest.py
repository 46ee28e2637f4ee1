"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from initlab.ui import keys, runner
from initlab.ui.results_panel import TABS

TAB_TITLES = tuple(title for title, _ in TABS)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is as fast, and immune to a busy machine (two OpenMP threads
    spinning against another process on two cores made these runs ten times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def empty_app_caches():
    """The app's caches are process-wide (every AppTest shares them): each test starts and
    ends with them empty, so what it sees is its own runs."""
    st.cache_data.clear()
    runner.store().clear()
    yield
    st.cache_data.clear()
    runner.store().clear()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite the golden files of exported code (tests/golden/) from the current export",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True under `pytest --update-golden`: golden tests write their file instead of comparing."""
    return bool(request.config.getoption("--update-golden"))


def open_tab(at: AppTest, title: str) -> AppTest:
    """Open one results tab and run the page: only the open tab's content is drawn, so its
    charts, tables, downloads and uploader exist only while it is open (the probe is cached:
    this rerun draws, it does not measure again)."""
    if title not in TAB_TITLES:
        raise ValueError(f"tab must be one of {TAB_TITLES}, not {title!r}")
    at.session_state[keys.TAB] = title
    if keys.TAB in at.query_params:  # as the browser rewrites the address on a tab click
        at.query_params[keys.TAB] = title
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at
