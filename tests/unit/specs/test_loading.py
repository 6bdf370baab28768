"""Loading experiment specs: every problem reported as ``FILE:LINE: field.path: message``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from flywheel.errors import SpecError
from flywheel.specs import (
    ChecksSpec,
    DataSpec,
    StorageSpec,
    TrackingSpec,
    TrainSpec,
    load_model,
    load_spec,
)

MINIMAL = """\
name: digits
team: vision
task:
  module: task
"""

TOP_LEVEL_FIELDS = (
    "checks, data, description, hparams, name, search, serve, storage, task, team, tracking, train"
)
TRAIN_FIELDS = (
    "activation_checkpointing, batch_size, checkpoint_every_epochs, epochs, "
    "grad_accumulation_steps, grad_clip_norm, max_failures, mesh, optimizer, precision, scaling, "
    "strategy"
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """The problems ``load_spec`` reports, as the lines a user sees."""
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return [str(p) for p in info.value.problems]


# Each case: the spec text (after MINIMAL, which takes lines 1-4) and the expected problems.
INVALID_AFTER_MINIMAL = {
    "misspelled top-level key": (
        "trian:\n  epochs: 3\n",
        ["5: trian: unknown field; did you mean 'train'?"],
    ),
    "misspelled nested key": (
        "train:\n  epocs: 3\n",
        ["6: train.epocs: unknown field; did you mean 'epochs'?"],
    ),
    "misspelled deeply nested key": (
        "checks:\n  overfit_one_batch:\n    stesp: 10\n",
        ["7: checks.overfit_one_batch.stesp: unknown field; did you mean 'steps'?"],
    ),
    "unknown top-level key with no close match": (
        "colour: red\n",
        [f"5: colour: unknown field; known fields: {TOP_LEVEL_FIELDS}"],
    ),
    "unknown nested key with no close match": (
        "train:\n  gpus: 4\n",
        [f"6: train.gpus: unknown field; known fields: {TRAIN_FIELDS}"],
    ),
    "a YAML 1.1 boolean word as a key is kept as written": (
        "on: push\n",
        [f"5: on: unknown field; known fields: {TOP_LEVEL_FIELDS}"],
    ),
    "string for an int": (
        "train:\n  epochs: ten\n",
        [
            "6: train.epochs: input should be a valid integer, "
            "unable to parse string as an integer (got 'ten')"
        ],
    ),
    "fraction for an int": (
        "train:\n  batch_size: 2.5\n",
        [
            "6: train.batch_size: input should be a valid integer, "
            "got a number with a fractional part (got 2.5)"
        ],
    ),
    "zero epochs": (
        "train:\n  epochs: 0\n",
        ["6: train.epochs: input should be greater than or equal to 1 (got 0)"],
    ),
    "validation split above 1": (
        "data:\n  validation_split: 1.5\n",
        ["6: data.validation_split: input should be less than 1 (got 1.5)"],
    ),
    "negative learning rate": (
        "train:\n  optimizer:\n    lr: -1\n",
        ["7: train.optimizer.lr: input should be greater than 0 (got -1)"],
    ),
    "unknown optimizer": (
        "train:\n  optimizer:\n    name: adamm\n",
        ["7: train.optimizer.name: input should be 'adam', 'adamw' or 'sgd' (got 'adamm')"],
    ),
    "unknown precision": (
        "train:\n  precision: fp16\n",
        ["6: train.precision: input should be 'fp32' or 'bf16' (got 'fp16')"],
    ),
    "unsupported strategy": (
        "train:\n  strategy: pipeline\n",
        ["6: train.strategy: input should be 'ddp', 'fsdp', 'tp' or 'fsdp+tp' (got 'pipeline')"],
    ),
    "batch size not divisible by the workers": (
        "train:\n  batch_size: 10\n  scaling:\n    num_workers: 4\n",
        ["5: train: batch_size 10 does not split evenly over 4 workers; use a multiple of 4"],
    ),
    "non-positive resources per worker": (
        "train:\n  scaling:\n    resources_per_worker:\n      CPU: 0\n      GPU: -0.5\n",
        [
            "8: train.scaling.resources_per_worker.CPU: input should be greater than 0 (got 0)",
            "9: train.scaling.resources_per_worker.GPU: input should be greater than 0 (got -0.5)",
        ],
    ),
    "a list as a hyperparameter": (
        "hparams:\n  hidden: [64, 32]\n",
        ["6: hparams.hidden: input should be a boolean, number or string"],
    ),
    "a hyperparameter named like a type": (
        "hparams:\n  float: null\n",
        ["6: hparams.float: input should be a boolean, number or string (got None)"],
    ),
    "a number as a tag value": (
        "tracking:\n  tags:\n    owner: 42\n",
        ["7: tracking.tags.owner: input should be a valid string (got 42)"],
    ),
    "a section left empty": (
        "train:\n",
        ["5: train: input should be a mapping of field: value (got None)"],
    ),
    "a bad registered model name": (
        "tracking:\n  registered_model: my model\n",
        [
            "6: tracking.registered_model: must start with a letter or digit and hold only "
            "letters, digits, '_', '.' and '-' (got 'my model')"
        ],
    ),
    "an empty MLflow experiment name": (
        "tracking:\n  experiment: ''\n",
        ["6: tracking.experiment: string should have at least 1 character (got '')"],
    ),
    "duplicate key": (
        "train:\n  epochs: 3\n  epochs: 4\n",
        ["7: train.epochs: duplicate key"],
    ),
    "unknown YAML tag": (
        "description: !Ref other\n",
        [
            "5: description: cannot read this value: "
            "could not determine a constructor for the tag '!Ref'"
        ],
    ),
    "a value PyYAML reads as an impossible date": (
        "description: 2024-13-45\n",
        [
            "5: description: cannot read '2024-13-45' (month must be in 1..12); "
            "quote it to make it a string"
        ],
    ),
    "a YAML merge key": (
        "hparams:\n  <<: {hidden: 64}\n",
        ["6: hparams.<<: YAML merge keys are not supported; write it out"],
    ),
    "a recursive alias": (
        "hparams: &h\n  self: *h\n",
        ["6: hparams.self: recursive YAML alias: a value cannot contain itself"],
    ),
    "a list as a key": (
        "[a, b]: 1\n",
        ["5: a key must be a plain name, not a mapping or a list"],
    ),
}


@pytest.mark.parametrize(
    ("text", "expected"), INVALID_AFTER_MINIMAL.values(), ids=INVALID_AFTER_MINIMAL.keys()
)
def test_invalid_value_is_reported_with_file_line_and_path(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, MINIMAL + text)
    assert problems(path) == [f"{path}:{message}" for message in expected]


# Each case: a whole spec text and the expected problems.
INVALID_FILES = {
    "missing name, team and task": (
        "description: no name\n",
        ["1: name: field required", "1: task: field required", "1: team: field required"],
    ),
    "missing team": (
        "name: digits\ntask:\n  module: task\n",
        ["1: team: field required"],
    ),
    "missing task module": (
        "name: digits\nteam: vision\ntask: {}\n",
        ["3: task.module: field required"],
    ),
    "task given as a string": (
        "name: digits\nteam: vision\ntask: task.py\n",
        ["3: task: input should be a mapping of field: value (got 'task.py')"],
    ),
    "upper case and underscore in names": (
        "name: My_Digits\nteam: Vision\ntask:\n  module: task\n",
        [
            "1: name: must be lower case letters, digits and dashes, start and end with a letter "
            "or digit, and be at most 63 characters (got 'My_Digits')",
            "2: team: must be lower case letters, digits and dashes, start and end with a letter "
            "or digit, and be at most 63 characters (got 'Vision')",
        ],
    ),
    "name ending with a dash": (
        "name: digits-\nteam: vision\ntask:\n  module: task\n",
        [
            "1: name: must be lower case letters, digits and dashes, start and end with a letter "
            "or digit, and be at most 63 characters (got 'digits-')",
        ],
    ),
    "task module given as a file name": (
        "name: digits\nteam: vision\ntask:\n  module: my-task.py\n",
        [
            "4: task.module: must be a dotted Python import path such as 'task' or "
            "'models.digits', without '.py' or dashes (got 'my-task.py')",
        ],
    ),
    "duplicate top-level key, reported with the other problems": (
        "name: digits\nteam: vision\nname: other\ntask:\n  module: task\ntrain:\n  epocs: 3\n",
        ["3: name: duplicate key", "7: train.epocs: unknown field; did you mean 'epochs'?"],
    ),
    "unclosed bracket": (
        "name: digits\nteam: vision\ntask: {module: task\ntrain:\n  epochs: 3\n",
        [
            "4: YAML syntax error: expected ',' or '}', but got ':' "
            "(while parsing a flow mapping that starts on line 3)"
        ],
    ),
    "unclosed bracket at the end of the file": (
        "name: digits\nteam: vision\ntask:\n  module: task\nhparams: {hidden: 64\n",
        [
            "6: YAML syntax error: expected ',' or '}', but got '<stream end>' "
            "(while parsing a flow mapping that starts on line 5)"
        ],
    ),
    "bad indentation": (
        "name: digits\nteam: vision\ntask:\n  module: task\n   kind: regression\n",
        [
            "5: YAML syntax error: mapping values are not allowed here; "
            "check the indentation, or quote a value that contains ': '"
        ],
    ),
    "dedented key": (
        "name: digits\nteam: vision\ntrain:\n    epochs: 3\n  batch_size: 8\n",
        [
            "5: YAML syntax error: expected <block end>, but found '<block mapping start>'; "
            "check the indentation"
        ],
    ),
    "unclosed quote": (
        MINIMAL + 'description: "digits\n',
        [
            "6: YAML syntax error: found unexpected end of stream "
            "(while scanning a quoted scalar that starts on line 5)"
        ],
    ),
    "tab indentation": (
        "name: digits\nteam: vision\ntask:\n\tmodule: task\n",
        [
            "4: YAML syntax error: found character '\\t' that cannot start any token; "
            "indent with spaces, not tabs"
        ],
    ),
    "two YAML documents": (
        MINIMAL + "---\nname: other\n",
        [
            "5: YAML syntax error: expected a single document in the stream, "
            "but found another document"
        ],
    ),
    "empty file": ("", ["1: the spec is empty; write a YAML mapping of field: value"]),
    "only comments": (
        "# to do\n",
        ["1: the spec is empty; write a YAML mapping of field: value"],
    ),
    "a list instead of a mapping": (
        "# experiments\n- name: digits\n  team: vision\n",
        ["2: the spec must be a YAML mapping of field: value, not a list"],
    ),
    "a plain string": (
        "digits\n",
        ["1: the spec must be a YAML mapping of field: value, not a string"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), INVALID_FILES.values(), ids=INVALID_FILES.keys())
def test_invalid_file_is_reported_with_file_and_line(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    assert problems(path) == [f"{path}:{message}" for message in expected]


def test_every_problem_in_a_file_is_reported_sorted_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: Digits
        team: vision
        task:
          module: task
        train:
          optimizer:
            name: adamm
          epocs: 3
          precision: fp16
        data:
          validation_split: 1.5
        colour: red
        """,
    )
    assert problems(path) == [
        f"{path}:1: name: must be lower case letters, digits and dashes, start and end with a "
        "letter or digit, and be at most 63 characters (got 'Digits')",
        f"{path}:7: train.optimizer.name: input should be 'adam', 'adamw' or 'sgd' (got 'adamm')",
        f"{path}:8: train.epocs: unknown field; did you mean 'epochs'?",
        f"{path}:9: train.precision: input should be 'fp32' or 'bf16' (got 'fp16')",
        f"{path}:11: data.validation_split: input should be less than 1 (got 1.5)",
        f"{path}:12: colour: unknown field; known fields: {TOP_LEVEL_FIELDS}",
    ]


def test_missing_file_is_reported_without_a_line(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    assert problems(path) == [f"{path}: cannot read the file: No such file or directory"]


def test_directory_is_reported_without_a_line(tmp_path: Path) -> None:
    assert problems(tmp_path) == [f"{tmp_path}: cannot read the file: Is a directory"]


def test_binary_file_is_reported_without_a_line(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x02\xff\xfe")
    assert problems(path) == [f"{path}: cannot read the file: it is not UTF-8 text"]


def test_minimal_spec_loads_with_every_default(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))

    assert (spec.name, spec.team, spec.description) == ("digits", "vision", "")
    assert (spec.task.module, spec.task.kind) == ("task", "classification")
    assert (spec.train.epochs, spec.train.batch_size) == (10, 64)
    optimizer = spec.train.optimizer
    assert (optimizer.name, optimizer.lr, optimizer.weight_decay) == ("adam", 3e-4, 0.0)
    assert (spec.train.precision, spec.train.strategy) == ("fp32", "ddp")
    assert (spec.train.scaling.num_workers, spec.train.scaling.use_gpu) == (1, False)
    assert spec.train.scaling.resources_per_worker == {}
    assert (spec.data.validation_split, spec.data.seed, spec.data.shuffle) == (0.2, 0, True)
    assert spec.checks.overfit_one_batch.enabled
    assert spec.hparams == {}
    assert spec.data == DataSpec()
    assert spec.train == TrainSpec()
    assert spec.checks == ChecksSpec()
    assert spec.tracking == TrackingSpec()
    assert spec.storage == StorageSpec()


def test_mlflow_names_default_from_team_and_name(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.mlflow_experiment == "vision/digits"
    assert spec.registered_model == "vision-digits"


def test_mlflow_names_can_be_set(tmp_path: Path) -> None:
    text = MINIMAL + "tracking:\n  experiment: shared/mnist\n  registered_model: mnist.v2\n"
    spec = load_spec(write(tmp_path, text))
    assert spec.mlflow_experiment == "shared/mnist"
    assert spec.registered_model == "mnist.v2"


def test_full_spec_keeps_every_value(tmp_path: Path) -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        description: "MNIST digits, MLP"
        data:
          validation_split: 0.1
          params: {subset: 1000}
        train:
          epochs: 3
          batch_size: 32
          optimizer: {name: sgd, lr: 1e-2, momentum: 0.8}
          scaling:
            num_workers: 2
            resources_per_worker: {CPU: 2}
        hparams:
          hidden: 64
          dropout: 0.1
          activation: relu
          batch_norm: false
        """
    )
    spec = load_spec(write(tmp_path, text))
    assert spec.train.optimizer.lr == 0.01  # YAML 1.1 reads 1e-2 as a string; pydantic parses it
    assert (spec.train.optimizer.name, spec.train.optimizer.momentum) == ("sgd", 0.8)
    assert (spec.train.epochs, spec.train.batch_size, spec.train.scaling.num_workers) == (3, 32, 2)
    assert spec.train.scaling.resources_per_worker == {"CPU": 2.0}
    assert spec.data.params == {"subset": 1000}
    assert spec.hparams == {"hidden": 64, "dropout": 0.1, "activation": "relu", "batch_norm": False}


def test_load_model_validates_any_model(tmp_path: Path) -> None:
    path = write(tmp_path, "epochs: 2\nbatch_size: 0\n")
    with pytest.raises(SpecError) as info:
        load_model(path, TrainSpec)
    expected = f"{path}:2: batch_size: input should be greater than or equal to 1 (got 0)"
    assert str(info.value) == expected
    assert load_model(write(tmp_path, "epochs: 2\n"), TrainSpec).epochs == 2
