"""The package's public surface: an explicit, sorted __all__ whose names all resolve."""

import flywheel


def test_all_is_sorted_and_resolves() -> None:
    assert flywheel.__all__ == sorted(flywheel.__all__)
    for name in flywheel.__all__:
        assert getattr(flywheel, name) is not None


def test_client_is_loaded_lazily() -> None:
    from flywheel.client import Client

    assert flywheel.Client is Client


def test_unknown_attribute_raises() -> None:
    try:
        flywheel.NoSuchThing  # noqa: B018
    except AttributeError as e:
        assert "NoSuchThing" in str(e)
    else:
        raise AssertionError("expected AttributeError")
