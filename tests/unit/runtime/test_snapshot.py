"""Data snapshots: Parquet under the storage root, addressed by content, reused on a rerun."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import TensorDataset

from flywheel import storage
from flywheel.runtime.data import split_dataset, to_arrays
from flywheel.runtime.snapshot import MAX_FEATURE_COLUMNS, write_snapshot
from flywheel.snapshots import MANIFEST_FILE, part_url, read_manifest
from flywheel.specs.experiment import DataSpec

FEATURES = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
TARGETS = np.arange(50) % 3


def _split(seed: int = 0, fraction: float = 1.0):
    dataset = TensorDataset(torch.from_numpy(FEATURES), torch.from_numpy(TARGETS))
    return split_dataset(dataset, DataSpec(seed=seed, fraction=fraction))


def test_the_snapshot_holds_exactly_the_train_and_validation_rows(tmp_path: Path) -> None:
    split = _split()
    result = write_snapshot(str(tmp_path), FEATURES, TARGETS, split, "task.load_data")

    fp = result.manifest.fingerprint
    train = pq.read_table(part_url(str(tmp_path), fp, "train")).to_pandas()
    val = pq.read_table(part_url(str(tmp_path), fp, "validation")).to_pandas()
    assert train["index"].tolist() == split.train_indices
    assert val["index"].tolist() == split.val_indices
    np.testing.assert_array_equal(train[["x0", "x1", "x2", "x3"]].to_numpy(),
                                  FEATURES[split.train_indices])  # fmt: skip
    np.testing.assert_array_equal(val["y"].to_numpy(), TARGETS[split.val_indices])
    assert [(p.name, p.rows) for p in result.manifest.parts] == [("train", 40), ("validation", 10)]
    assert result.manifest.feature_shape == [4] and not result.reused
    assert [c.name for c in result.manifest.columns] == ["index", "x0", "x1", "x2", "x3", "y"]


def test_a_rerun_with_the_same_spec_and_data_reuses_the_snapshot(tmp_path: Path) -> None:
    first = write_snapshot(str(tmp_path), FEATURES, TARGETS, _split(), "task.load_data")
    again = write_snapshot(str(tmp_path), FEATURES, TARGETS, _split(), "task.load_data")

    assert again.reused and again.manifest == first.manifest
    assert len(list((tmp_path / "snapshots").iterdir())) == 1


def test_other_data_or_another_split_is_another_snapshot(tmp_path: Path) -> None:
    root = str(tmp_path)
    base = write_snapshot(root, FEATURES, TARGETS, _split(), "t").manifest.fingerprint
    changed = FEATURES.copy()
    changed[7, 2] += 1.0
    others = {
        write_snapshot(root, changed, TARGETS, _split(), "t").manifest.fingerprint,
        write_snapshot(root, FEATURES, TARGETS, _split(seed=1), "t").manifest.fingerprint,
        write_snapshot(root, FEATURES, TARGETS, _split(fraction=0.5), "t").manifest.fingerprint,
    }
    assert base not in others and len(others) == 3


def test_a_snapshot_without_its_manifest_is_written_again(tmp_path: Path) -> None:
    """A job that died after the Parquet files but before the manifest left no snapshot."""
    first = write_snapshot(str(tmp_path), FEATURES, TARGETS, _split(), "t")
    (Path(first.url) / MANIFEST_FILE).unlink()
    assert read_manifest(first.url) is None

    again = write_snapshot(str(tmp_path), FEATURES, TARGETS, _split(), "t")

    assert not again.reused and read_manifest(first.url) == again.manifest


def test_wide_examples_are_one_list_column(tmp_path: Path) -> None:
    images = np.random.default_rng(0).random((20, 3, 20, 20), dtype=np.float32)
    assert images[0].size > MAX_FEATURE_COLUMNS
    labels = np.zeros((20, 5), dtype=np.int64)
    dataset = TensorDataset(torch.from_numpy(images), torch.from_numpy(labels))
    split = split_dataset(dataset, DataSpec())
    features, targets = to_arrays(dataset)

    result = write_snapshot(str(tmp_path), features, targets, split, "t")

    table = pq.read_table(part_url(str(tmp_path), result.manifest.fingerprint, "train"))
    assert table.column_names == ["index", "x", "y"]
    row = np.asarray(table.column("x")[0].as_py(), dtype=np.float32)
    np.testing.assert_array_equal(row, images[split.train_indices[0]].reshape(-1))
    assert result.manifest.feature_shape == [3, 20, 20] and result.manifest.target_shape == [5]


def test_the_manifest_is_read_leniently(tmp_path: Path) -> None:
    result = write_snapshot(str(tmp_path), FEATURES, TARGETS, _split(), "t")
    url = storage.join(result.url, MANIFEST_FILE)
    text = Path(url).read_text()
    Path(url).write_text(text.replace('"source"', '"written_by": "a newer flywheel", "source"'))

    assert read_manifest(result.url) == result.manifest
