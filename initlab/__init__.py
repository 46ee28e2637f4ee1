"""initlab: see what a weight-initialization scheme does to a PyTorch network before training.

exp = initlab.Experiment.from_dict(d)
res = initlab.run(exp)                      # Results: .layers, .params, .histograms
model = initlab.build_model({"name": "mlp", "depth": 10, "width": 256})
params = initlab.apply_scheme(model, initlab.preset("kaiming_normal"), generator=g)
layers = initlab.probe(model, x, backward=True, generator=g).layers
found = initlab.scheme_warnings(scheme, model)  # the gotchas (a meta model: structural ones)
res = initlab.compare(MyNet, ["as_constructed", "kaiming_normal"], input=x)  # your own model
gpt2 = initlab.build_model({"name": "hf", "architecture": "gpt2", "n_layer": 4}, seed=0)
trained = initlab.train(exp)                # TrainingResults: .training, .layers, .params, .runs
"""

from initlab.architectures import ARCHITECTURES
from initlab.codegen import to_code
from initlab.experiment import Experiment, Results, run
from initlab.gotchas import WARNINGS, SchemeWarning, scheme_warnings
from initlab.methods import METHODS, MethodSpec
from initlab.models import MODELS, build_model
from initlab.notebook import compare
from initlab.presets import PRESETS, preset
from initlab.probe import ProbeError, ProbeResult, probe
from initlab.schemes import Rule, Scheme, apply_scheme, validate_scheme
from initlab.tasks import TASKS
from initlab.training import TrainingResults, train

__all__ = [
    "ARCHITECTURES",
    "METHODS",
    "MODELS",
    "PRESETS",
    "TASKS",
    "WARNINGS",
    "Experiment",
    "MethodSpec",
    "ProbeError",
    "ProbeResult",
    "Results",
    "Rule",
    "Scheme",
    "SchemeWarning",
    "TrainingResults",
    "apply_scheme",
    "build_model",
    "compare",
    "preset",
    "probe",
    "run",
    "scheme_warnings",
    "to_code",
    "train",
    "validate_scheme",
]
