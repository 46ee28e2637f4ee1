"""Short training runs: fairness, reproducibility, what is recorded, and that the curves say
what the theory of initialization predicts (the too-small and the zero schemes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from initlab.experiment import Experiment, build_initialized
from initlab.tasks import TASKS, entropy_rate, markov_chain
from initlab.training import BatchOrder, Trainer, checksum, train, trained_experiment

MLP10 = {"name": "mlp", "depth": 10, "width": 64, "activation": "relu", "bias": True}


def experiment(model: dict, schemes: list, training: dict, **extra) -> Experiment:
    return Experiment.from_dict(
        {
            "model": model,
            "schemes": [{"name": p, "preset": p} if isinstance(p, str) else p for p in schemes],
            "training": training,
            **extra,
        }
    )


def final_heldout(results, scheme: str) -> float:
    t = results.training
    held = t[(t["scheme"] == scheme) & (t["split"] == "heldout")]
    return float(held[held["step"] == held["step"].max()]["loss"].mean())


@pytest.fixture(scope="module")
def teacher_run():
    exp = experiment(
        MLP10,
        ["kaiming_normal", "too_small", "zeros"],
        {"task": "teacher", "steps": 300, "optimizer": {"name": "sgd", "lr": 0.03}},
        seeds=[0, 1],
    )
    trainer = Trainer(exp)
    trainer.run()
    return trainer, trainer.results()


def test_kaiming_learns_the_teacher_and_too_small_does_not(teacher_run) -> None:
    _, results = teacher_run
    kaiming, small = final_heldout(results, "kaiming_normal"), final_heldout(results, "too_small")
    # Measured (mean of seeds 0 and 1): kaiming 0.537 (0.519, 0.554), too_small 1.006: its
    # signal vanishes over ten layers, so it stays at chance (1.006).
    assert kaiming < 0.7 * small, (kaiming, small)
    assert small > 0.9 * results.chance


def test_zeros_never_breaks_symmetry_and_only_the_output_bias_learns(teacher_run) -> None:
    trainer, results = teacher_run
    for run in trainer.runs:
        if run.scheme.name == "zeros":
            for name, p in run.model.named_parameters():
                if p.dim() == 2:  # every unit of a layer has the same incoming weights, exactly
                    assert torch.equal(p, p[:1].expand_as(p)), name
    data = trainer.data
    # The best the output bias alone can do: predict the training set's mean of each output.
    best = ((data.heldout_y - data.train_y.mean(0)) ** 2).mean().item()
    final = final_heldout(results, "zeros")
    assert final == pytest.approx(best, rel=0.03), (final, best)


def test_same_seed_same_curves_bit_for_bit_and_batches_independent_of_scheme() -> None:
    exp = experiment(
        {"name": "mlp", "depth": 3, "width": 16},
        ["kaiming_normal", "xavier_normal"],
        {"task": "teacher", "steps": 20, "eval_every": 5},
        seeds=[3, 4],
    )
    a, b = train(exp), train(exp)
    for name in ("training", "layers", "params", "runs"):
        assert getattr(a, name).equals(getattr(b, name)), name
    train_rows = a.training[a.training["split"] == "train"]
    for _seed, rows in train_rows.groupby("seed"):
        by_scheme = [g["batch"].to_numpy() for _, g in rows.groupby("scheme")]
        assert np.array_equal(by_scheme[0], by_scheme[1])
    seeds = [g["batch"].to_numpy() for _, g in train_rows.groupby("seed")]
    assert not np.array_equal(seeds[0], seeds[1])  # another seed, another order


def test_batch_order_is_epochs_of_permutations() -> None:
    order = BatchOrder(0, 10)
    seen = torch.cat([order.next(4) for _ in range(5)])  # 20 indices: two whole epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:].tolist()) == list(range(10))
    assert checksum(seen[:4]) != checksum(seen[4:8])


def test_the_recorded_update_ratio_is_the_step_actually_taken() -> None:
    exp = experiment(
        {"name": "mlp", "depth": 2, "width": 8, "bias": True},
        ["kaiming_normal"],
        {
            "task": "teacher",
            "steps": 1,
            "record_at": [0],
            "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0},
        },
    )
    results = train(exp)
    trained, _ = trained_experiment(exp)
    model, _ = build_initialized(trained, exp.schemes[0], 0)
    trainer = Trainer(exp)  # the same data and the same first batch, recomputed by hand
    indices = BatchOrder(0, trainer.data.train_x.shape[0]).next(64)
    x, y = trainer.data.train_x[indices], trainer.data.train_y[indices]
    torch.nn.functional.mse_loss(model(x), y).backward()
    for name, p in model.named_parameters():
        row = results.params[results.params["param"] == name].iloc[0]
        w = p.detach().double().numpy()
        update = 0.1 * p.grad.double().numpy()  # plain SGD: the update is lr × gradient
        assert row["grad_norm"] == pytest.approx(np.linalg.norm(p.grad.double().numpy()), 1e-6)
        assert row["update_std"] == pytest.approx(update.std(), rel=1e-5)
        if w.std() > 0:
            assert row["update_ratio"] == pytest.approx(update.std() / w.std(), rel=1e-5)


def test_a_diverging_scheme_is_reported_not_raised() -> None:
    exp = experiment(
        {"name": "mlp", "depth": 4, "width": 16, "head": True},
        ["kaiming_normal", "too_large"],
        {"task": "teacher", "steps": 50, "optimizer": {"name": "sgd", "lr": 5.0}},
    )
    results = train(exp)
    runs = results.runs.set_index("scheme")
    assert runs.loc["too_large", "status"] == "diverged"
    assert runs.loc["too_large", "diverged_at"] < 50
    assert runs.loc["too_large", "steps"] == runs.loc["too_large", "diverged_at"]


def test_tokens_a_transformer_approaches_the_entropy_rate() -> None:
    model = {
        "name": "transformer",
        "n_layers": 2,
        "d_model": 64,
        "n_heads": 4,
        "vocab_size": 16,
        "seq_len": 16,
    }
    exp = experiment(
        model,
        ["gpt2"],
        {
            "task": "tokens",
            "steps": 400,
            "batch_size": 32,
            "optimizer": {"name": "adam", "lr": 3e-3},
        },
    )
    results = train(exp)
    successors, probs = markov_chain(16, 0)
    rate, _ = entropy_rate(successors, probs)
    assert results.floor == pytest.approx(rate, abs=1e-12)
    final = final_heldout(results, "gpt2")
    assert final == pytest.approx(rate, abs=0.05), (final, rate)


@pytest.mark.parametrize(
    "training, words",
    [
        ({"optimizer": {"name": "sgd", "lr": 0.0}}, "training.optimizer.lr"),
        ({"optimizer": {"name": "sgd", "lr": -1.0}}, "training.optimizer.lr"),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, "adam has no momentum"),
        ({"steps": 5001}, "training.steps"),
        ({"task": "tokens"}, "tokens"),
        ({"task": "nope"}, "digits"),
        ({"record_at": [5, 2]}, "increasing"),
        ({"steps": 10, "record_at": [0, 20]}, "beyond"),
        ({"stepz": 10}, "eval_every"),
    ],
)
def test_bad_training_sections_are_one_clear_error(training: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        experiment({"name": "mlp", "depth": 2, "width": 8}, ["kaiming_normal"], training)


def test_training_round_trips_and_its_absence_stays_absent() -> None:
    exp = experiment(
        {"name": "mlp", "depth": 2, "width": 8}, ["kaiming_normal"], {"task": "teacher"}
    )
    again = Experiment.from_dict(exp.to_dict())
    assert again == exp and again.to_dict()["training"]["task"] == "teacher"
    plain = Experiment.from_dict({"model": {"name": "mlp"}, "schemes": [{"preset": "zeros"}]})
    assert "training" not in plain.to_dict()


def test_the_guard_refuses_a_hopeless_training_before_it_starts(monkeypatch) -> None:
    monkeypatch.setenv("INITLAB_TIME_BUDGET_S", "5")  # the probe alone fits; 5000 steps do not
    exp = experiment(
        {"name": "mlp", "depth": 20, "width": 512},
        ["kaiming_normal"],
        {"task": "teacher", "steps": 5000, "batch_size": 1024},
    )
    with pytest.raises(ValueError, match="training too slow"):
        Trainer(exp)


def test_stop_leaves_every_scheme_at_the_same_step() -> None:
    exp = experiment(
        {"name": "mlp", "depth": 2, "width": 8},
        ["kaiming_normal", "xavier_normal"],
        {"task": "teacher", "steps": 100},
    )
    trainer = Trainer(exp)
    calls = iter(range(1000))
    trainer.run(stop=lambda: next(calls) >= 10)
    runs = trainer.results().runs
    assert set(runs["status"]) == {"stopped"} and set(runs["steps"]) == {10}


def test_every_task_is_registered() -> None:
    assert list(TASKS) == ["digits", "teacher", "tokens"]
