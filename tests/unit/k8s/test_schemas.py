"""The strict validation used by every k8s test rejects what it must (it cannot pass vacuously)."""

from __future__ import annotations

import jsonschema
import kubernetes_validate
import pytest

from .conftest import Validate

RAYJOB = {
    "apiVersion": "ray.io/v1",
    "kind": "RayJob",
    "metadata": {"name": "x"},
    "spec": {"entrypoint": "python -c pass"},
}


def test_a_minimal_rayjob_validates(validate: Validate) -> None:
    validate(RAYJOB)


def test_an_unknown_crd_field_is_rejected(validate: Validate) -> None:
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        validate({**RAYJOB, "spec": {**RAYJOB["spec"], "shutdownAfterJobFinish": True}})


def test_a_float_quantity_is_rejected_by_the_crd(validate: Validate) -> None:
    queue = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": "q"},
        "spec": {
            "resourceGroups": [
                {
                    "coveredResources": ["cpu"],
                    "flavors": [{"name": "f", "resources": [{"name": "cpu", "nominalQuota": 0.5}]}],
                }
            ]
        },
    }
    with pytest.raises(jsonschema.ValidationError):
        validate(queue)


def test_an_unknown_builtin_field_is_rejected(validate: Validate) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "lables": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(namespace)
