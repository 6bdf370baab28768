"""Progress events: printed by jobs, parsed by the client."""

from flywheel.progress import MARKER, ProgressEvent, parse_progress


def test_round_trip() -> None:
    event = ProgressEvent("train", "x", epoch=3, epochs=10, metrics={"val_loss": 0.5})
    assert parse_progress(event.to_line()) == event


def test_marker_behind_a_ray_worker_prefix() -> None:
    event = ProgressEvent("train", epoch=1, epochs=2)
    assert parse_progress(f"\x1b[36m(RayTrainWorker pid=1)\x1b[0m {event.to_line()}") == event


def test_ordinary_and_malformed_lines_are_ignored() -> None:
    assert parse_progress("epoch 3 done") is None
    assert parse_progress(MARKER + "{not json") is None
    assert parse_progress(MARKER + '{"message": "no stage"}') is None
