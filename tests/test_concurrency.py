"""Streamlit runs sessions as threads of one process: the same experiment run in many threads
at once must give exactly what one thread gives (model construction seeds torch's global RNG,
which is safe only under initlab.rng's lock)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import torch

import initlab
from initlab.models import build_model

THREADS = 8
# pytorch_default keeps every module's own init, i.e. draws from the global generator.
EXPERIMENT = {
    "model": {"name": "mlp", "depth": 4, "width": 32, "bias": True},
    "input": {"batch_size": 16},
    "seeds": [0, 1],
    "schemes": [{"name": "default", "preset": "pytorch_default"}],
}


def _state(seed: int) -> dict[str, torch.Tensor]:
    spec = {"name": "resnet", "stages": 2, "blocks": 1, "width": 8, "image_size": 8}
    return build_model(spec, seed=seed).state_dict()


def test_models_built_in_eight_threads_equal_the_one_thread_build():
    solo = {seed: _state(seed) for seed in range(4)}
    with ThreadPoolExecutor(THREADS) as pool:
        built = list(pool.map(lambda i: (i % 4, _state(i % 4)), range(THREADS * 6)))
    for seed, state in built:
        for name, tensor in state.items():
            assert torch.equal(tensor, solo[seed][name]), (seed, name)


def test_runs_in_eight_threads_are_bit_identical_to_one_thread():
    exp = initlab.Experiment.from_dict(EXPERIMENT)
    solo = initlab.run(exp)
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda _: initlab.run(exp), range(THREADS * 2)))
    for res in results:
        pd.testing.assert_frame_equal(res.layers, solo.layers)
        pd.testing.assert_frame_equal(res.params, solo.params)
        pd.testing.assert_frame_equal(res.histograms, solo.histograms)


def test_a_seeded_build_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model({"name": "mlp", "depth": 2, "width": 8}, seed=5)
    assert torch.equal(torch.rand(3), expected)
