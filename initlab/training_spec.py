"""The experiment's optional `training` section: task, optimizer, steps and what is recorded.

Validated like the rest of the experiment (pydantic, strict numbers, bounds), so a link or a
file can ask for a training run but never an unbounded one. Whether the task suits the model
is checked by the experiment, which knows the model (`initlab.tasks.check_task`).
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from initlab.params import shown

MAX_STEPS = 5000
MAX_BATCH = 4096
MAX_RECORDS = 64
# The steps where per-layer statistics are taken by default: 1-2-5 per decade, as the
# statistics change fastest right after initialization.
LOG_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)

# Each optimizer's fields and their defaults; a field another optimizer has is refused.
OPTIMIZER_FIELDS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01, "momentum": 0.9},
    "adam": {"lr": 1e-3, "weight_decay": 0.0},
    "adamw": {"lr": 1e-3, "weight_decay": 0.01},
}


class OptimizerSpec(BaseModel):
    """`sgd` (lr, momentum), `adam` or `adamw` (lr, weight_decay); missing fields get defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: StrictFloat | None = Field(
        None, allow_inf_nan=False, gt=0, le=10.0, description="learning rate"
    )
    momentum: StrictFloat | None = Field(
        None, allow_inf_nan=False, ge=0, lt=1, description="sgd's momentum"
    )
    weight_decay: StrictFloat | None = Field(
        None, allow_inf_nan=False, ge=0, le=1.0, description="adam's / adamw's weight decay"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _fields_of_this_optimizer(self) -> OptimizerSpec:
        own = OPTIMIZER_FIELDS[self.name]
        for field in ("momentum", "weight_decay"):
            if getattr(self, field) is not None and field not in own:
                raise ValueError(
                    f"training.optimizer.{field}: {self.name} has no {field}; its fields: "
                    f"{', '.join(own)}"
                )
        return self

    def settings(self) -> dict[str, float]:
        """Every field of this optimizer, given or defaulted (what torch.optim receives)."""
        own = OPTIMIZER_FIELDS[self.name]
        return {k: getattr(self, k) if getattr(self, k) is not None else v for k, v in own.items()}


class TrainingSpec(BaseModel):
    """A short training run per (scheme, seed): see DESIGN.md, *Training runs*."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    task: str | None = None  # None: the model's own (initlab.tasks.default_task)
    optimizer: OptimizerSpec = OptimizerSpec()
    steps: StrictInt = Field(300, ge=1, le=MAX_STEPS, description="updates per run")
    batch_size: StrictInt = Field(64, ge=1, le=MAX_BATCH, description="samples per update")
    eval_every: StrictInt = Field(
        25, ge=1, le=MAX_STEPS, description="steps between held-out evaluations"
    )
    record_at: tuple[StrictInt, ...] | None = Field(None, min_length=1, max_length=MAX_RECORDS)

    @field_validator("record_at")
    @classmethod
    def _increasing(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (
            min(value) < 0 or any(b <= a for a, b in itertools.pairwise(value))
        ):
            raise ValueError(
                f"must be steps >= 0 in increasing order, each once; got {shown(list(value))}"
            )
        return value

    @model_validator(mode="after")
    def _records_within_steps(self) -> TrainingSpec:
        if self.record_at is not None and self.record_at[-1] > self.steps:
            raise ValueError(
                f"training.record_at: step {self.record_at[-1]} is beyond the run's "
                f"{self.steps} steps; record at 0 to {self.steps}"
            )
        return self

    def records(self) -> tuple[int, ...]:
        """The steps with per-layer statistics: as given, else log-spaced and the last step."""
        if self.record_at is not None:
            return self.record_at
        return (*(s for s in LOG_STEPS if s < self.steps), self.steps)

    def evaluations(self) -> tuple[int, ...]:
        """The steps with a held-out evaluation: every eval_every steps, and the last."""
        return (*range(0, self.steps, self.eval_every), self.steps)
