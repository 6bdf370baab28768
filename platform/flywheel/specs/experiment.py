"""The experiment spec: what a team writes to run one experiment.

Pure pydantic models: no I/O, no ray. Loading from YAML with file:line errors is in
:mod:`flywheel.specs.loading`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from flywheel.errors import FlywheelError
from flywheel.specs.base import (
    IMPORT_PATH_PATTERN,
    SLUG_PATTERN,
    NestedValueError,
    Scalar,
    StrictModel,
)
from flywheel.specs.parallel import MeshShape, Strategy, resolve_mesh
from flywheel.specs.search import ChoiceParam, SearchSpec
from flywheel.specs.serving import ServeSpec
from flywheel.storage_layout import parse_root

#: A name the MLflow Model Registry accepts and that is safe in URLs and file names.
REGISTRY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class TaskSpec(StrictModel):
    """The user's code: a module in the experiment folder with ``build_model`` and ``load_data``."""

    module: str = Field(
        pattern=IMPORT_PATH_PATTERN,
        description=(
            "Import path, relative to the experiment folder, of the module that defines "
            "`build_model(hparams)` (returns a torch.nn.Module) and `load_data(hparams)` "
            "(returns a sized torch Dataset of (features, target) pairs)."
        ),
    )
    kind: Literal["classification", "regression", "language_model"] = Field(
        default="classification",
        description=(
            "Problem type; picks the loss, the metrics and the baseline. `language_model`: "
            "features are token ids (N, T), targets the next tokens (N, T), the model returns "
            "logits (N, T, vocabulary); loss and accuracy are per token."
        ),
    )


class DataSpec(StrictModel):
    """How the dataset returned by ``load_data`` is split and ordered."""

    validation_split: float = Field(
        default=0.2, gt=0.0, lt=1.0, description="Fraction of the data held out for validation."
    )
    seed: int = Field(
        default=0, ge=0, description="Seed of the train/validation split and the shuffling."
    )
    shuffle: bool = Field(default=True, description="Shuffle the training data every epoch.")
    params: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Dataset parameters, passed to `load_data` merged into `hparams`.",
    )
    fraction: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Fraction of the training split used; search stages use it for low fidelity.",
    )


class OptimizerSpec(StrictModel):
    """The optimizer. Adam at 3e-4 is the practitioners' safe default."""

    name: Literal["adam", "adamw", "sgd"] = Field(default="adam", description="Optimizer.")
    lr: float = Field(default=3e-4, gt=0.0, description="Learning rate.")
    weight_decay: float = Field(default=0.0, ge=0.0, description="Weight decay (L2).")
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="Momentum; used by sgd only.")


class ScalingSpec(StrictModel):
    """How many Ray Train workers, and what each one gets."""

    num_workers: int = Field(default=1, ge=1, description="Number of training workers.")
    use_gpu: bool = Field(default=False, description="Give each worker a GPU.")
    resources_per_worker: dict[str, Annotated[float, Field(gt=0.0)]] = Field(
        default_factory=dict,
        description="Ray resources per worker, e.g. `{CPU: 2, GPU: 0.5}`. Empty: 1 CPU (+1 GPU).",
    )


class MeshSpec(StrictModel):
    """A 2-D device mesh: `dp` data-parallel (FSDP) groups of `tp` tensor-parallel ranks each."""

    dp: int = Field(ge=1, description="Data-parallel size: FSDP shards over this many groups.")
    tp: int = Field(ge=1, description="Tensor-parallel size: each layer is split over this many.")


class TrainSpec(StrictModel):
    """Training: epochs, batches, optimizer, parallelism and checkpoints."""

    epochs: int = Field(default=10, ge=1, description="Number of passes over the training data.")
    batch_size: int = Field(
        default=64,
        ge=1,
        description=(
            "Global batch size; each data-parallel worker (`scaling.num_workers` / `mesh.tp`) "
            "gets an equal share, cut into `grad_accumulation_steps` micro-batches."
        ),
    )
    optimizer: OptimizerSpec = Field(
        default_factory=OptimizerSpec, description="Optimizer and its settings."
    )
    grad_clip_norm: float | None = Field(
        default=None,
        gt=0.0,
        description=(
            "Clip the global gradient norm to this value; null: off. ddp and fsdp only, for now."
        ),
    )
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description=(
            "Numeric precision: fp32, or bf16. ddp and tp: bf16 autocast of the forward pass. "
            "fsdp and fsdp+tp: FSDP's MixedPrecisionPolicy, bf16 parameters in forward and "
            "backward, gradients reduced and the optimizer stepping in fp32. Works on CPU too "
            "(slower than fp32 on most CPUs without bf16 instructions)."
        ),
    )
    checkpoint_every_epochs: int = Field(
        default=1, ge=1, description="Write a checkpoint every N epochs (and after the last one)."
    )
    max_failures: int = Field(
        default=2,
        ge=0,
        description="Times a failed training worker group restarts from its last checkpoint.",
    )
    strategy: Strategy = Field(
        default="ddp",
        description=(
            "Parallelism strategy. `ddp`: data parallel (DistributedDataParallel); `fsdp`: "
            "parameters, gradients and optimizer state sharded over the workers (FSDP2 "
            "`fully_shard`, units from the task's `fsdp_units(model)`); `tp`: tensor parallel, "
            "layers split by the task's `tensor_parallel_plan(model)`; `fsdp+tp`: both, on the "
            "2-D `mesh`. The sharded strategies write sharded checkpoints "
            "(torch.distributed.checkpoint)."
        ),
    )
    mesh: MeshSpec | None = Field(
        default=None,
        description=(
            "Device mesh, dp * tp = `scaling.num_workers`. Required by `fsdp+tp`; otherwise "
            "derived: ddp and fsdp `{dp: num_workers, tp: 1}`, tp `{dp: 1, tp: num_workers}`."
        ),
    )
    grad_accumulation_steps: int = Field(
        default=1,
        ge=1,
        description=(
            "Split each worker's share of the batch into this many micro-batches, summing their "
            "gradients before one optimizer step: same result, less activation memory."
        ),
    )
    activation_checkpointing: bool = Field(
        default=False,
        description=(
            "Recompute the activations of the task's `fsdp_units(model)` in the backward pass "
            "instead of keeping them: less memory, about one more forward pass of compute."
        ),
    )
    scaling: ScalingSpec = Field(
        default_factory=ScalingSpec, description="Workers and their resources."
    )

    @model_validator(mode="after")
    def _mesh_fits_workers(self) -> TrainSpec:
        try:
            _ = self.mesh_shape
        except ValueError as e:
            raise NestedValueError(("mesh",), str(e)) from e
        return self

    @model_validator(mode="after")
    def _clipping_fits_the_strategy(self) -> TrainSpec:
        if self.grad_clip_norm is not None and self.strategy in ("tp", "fsdp+tp"):
            message = (
                f"grad_clip_norm is not supported with strategy {self.strategy} yet (its model "
                "mixes tensor-parallel and replicated parameters); use ddp or fsdp, or remove it"
            )
            raise NestedValueError(("grad_clip_norm",), message)
        return self

    @model_validator(mode="after")
    def _batch_splits_evenly(self) -> TrainSpec:
        parts = self.batch_parts
        if self.batch_size % parts:
            over = self.batch_split_text.replace("the number of workers", f"{parts} workers")
            raise ValueError(
                f"batch_size {self.batch_size} does not split evenly over {over}; "
                f"use a multiple of {parts}"
            )
        return self

    @property
    def mesh_shape(self) -> MeshShape:
        """The mesh training runs on: the spec's, or the one the strategy derives."""
        dp, tp = (self.mesh.dp, self.mesh.tp) if self.mesh else (None, None)
        return resolve_mesh(self.strategy, dp, tp, self.scaling.num_workers)

    @property
    def batch_split_text(self) -> str:
        """What a global batch is split over, in words, for error messages."""
        shape, steps = self.mesh_shape, self.grad_accumulation_steps
        if shape.tp == 1 and steps == 1:
            return "the number of workers"
        text = f"{shape.dp} workers" if shape.tp == 1 else f"{shape.dp} data-parallel groups"
        return text if steps == 1 else f"{text} x {steps} accumulation steps"

    @property
    def batch_parts(self) -> int:
        """Into how many equal micro-batches one global batch is cut."""
        return self.mesh_shape.dp * self.grad_accumulation_steps


class OverfitSpec(StrictModel):
    """The overfit-one-batch check: a healthy model and loss can memorise a single batch."""

    enabled: bool = Field(default=True, description="Run the check before training.")
    steps: int = Field(default=200, ge=1, description="Optimizer steps on the one batch.")
    loss_threshold: float = Field(
        default=0.05, gt=0.0, description="The check fails unless the loss falls below this."
    )
    batch_size: int = Field(default=32, ge=1, description="Size of the one batch.")
    lr: float | None = Field(
        default=None, gt=0.0, description="Learning rate for the check; null: 10x the training lr."
    )


class ChecksSpec(StrictModel):
    """Sanity checks run before the real training."""

    baseline: bool = Field(
        default=True,
        description=(
            "Log a trivial baseline: majority class (classification) or the mean (regression)."
        ),
    )
    overfit_one_batch: OverfitSpec = Field(
        default_factory=OverfitSpec, description="The overfit-one-batch check."
    )


class TrackingSpec(StrictModel):
    """Where the experiment is recorded in MLflow."""

    experiment: str | None = Field(
        default=None,
        min_length=1,
        description="MLflow experiment name; default `<team>/<name>`.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Extra tags on the MLflow run.")
    registered_model: str | None = Field(
        default=None,
        pattern=REGISTRY_NAME_PATTERN,
        description="Model Registry name for the final model; default `<team>-<name>`.",
    )
    register_model: bool = Field(default=True, description="Register the final model.")


class StorageSpec(StrictModel):
    """Where checkpoints and experiment state are kept."""

    root: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Storage root: a local directory or `s3://bucket/prefix`; "
            "default: the platform's `FLYWHEEL_STORAGE_ROOT`."
        ),
    )

    @field_validator("root")
    @classmethod
    def _known_kind(cls, root: str | None) -> str | None:
        if root is not None:
            try:
                parse_root(root)
            except FlywheelError as e:
                raise ValueError(str(e)) from None
        return root


class ExperimentSpec(StrictModel):
    """One experiment: what to train, on what data, how, and where to record it."""

    name: str = Field(
        pattern=SLUG_PATTERN, description="Experiment name (lower case, digits, dashes)."
    )
    team: str = Field(pattern=SLUG_PATTERN, description="Team that owns the experiment.")
    description: str = Field(default="", description="Free text shown in listings and MLflow.")
    task: TaskSpec = Field(description="The user's model and data code.")
    data: DataSpec = Field(default_factory=DataSpec, description="Data split and order.")
    train: TrainSpec = Field(default_factory=TrainSpec, description="Training settings.")
    hparams: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Fixed hyperparameters, passed to `build_model` and `load_data`.",
    )
    search: SearchSpec | None = Field(
        default=None, description="Hyperparameter search; null: train once with `hparams`."
    )
    checks: ChecksSpec = Field(
        default_factory=ChecksSpec, description="Pre-training sanity checks."
    )
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Storage root.")
    serve: ServeSpec | None = Field(
        default=None,
        description="Serve the registered model when the experiment ends; null: do not serve.",
    )

    @model_validator(mode="after")
    def _served_model_is_registered(self) -> ExperimentSpec:
        """Only a registered model can be served: the gateway loads it from the registry."""
        if self.serve is not None and self.serve.enabled and not self.tracking.register_model:
            message = "serve needs the registered model; set register_model: true or drop serve"
            raise NestedValueError(("tracking", "register_model"), message)
        return self

    @model_validator(mode="after")
    def _searched_batch_splits_evenly(self) -> ExperimentSpec:
        """Every batch size a search may try must split over the workers, as `train` requires."""
        workers = self.train.batch_parts
        param = self.search.space.get("train.batch_size") if self.search else None
        if param is None or workers == 1:
            return self
        if not isinstance(param, ChoiceParam):
            message = (
                f"with {workers} workers, search batch sizes as a choice of multiples of "
                f"{workers}, so that every batch splits evenly"
            )
            raise NestedValueError(("search", "space", "train.batch_size"), message)
        uneven = [v for v in param.values if int(v) % workers]
        if uneven:
            message = (
                f"batch sizes must be multiples of {workers}, {self.train.batch_split_text}, "
                f"to split evenly; not {', '.join(map(str, uneven))}"
            )
            raise NestedValueError(("search", "space", "train.batch_size", "values"), message)
        return self

    @model_validator(mode="after")
    def _trials_fit_the_mesh(self) -> ExperimentSpec:
        """Trials of several workers keep the mesh's tensor-parallel size; see ``trial_spec``."""
        if self.search is None or self.train.strategy != "fsdp+tp":
            return self
        workers, tp = self.search.trial_workers, self.train.mesh_shape.tp
        if workers > 1 and workers % tp:
            message = (
                f"with strategy fsdp+tp and mesh.tp {tp}, trial_workers must be 1 (trials train "
                f"unsharded) or a multiple of {tp}"
            )
            raise NestedValueError(("search", "trial_workers"), message)
        return self

    @property
    def mlflow_experiment(self) -> str:
        """MLflow experiment name, defaulted from team and name."""
        return self.tracking.experiment or f"{self.team}/{self.name}"

    @property
    def registered_model(self) -> str:
        """Model Registry name, defaulted from team and name."""
        return self.tracking.registered_model or f"{self.team}-{self.name}"
