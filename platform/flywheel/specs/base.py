"""The strict base model every spec section derives from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

#: A name usable in job ids, Kubernetes objects and MLflow: lower case, digits and dashes.
SLUG_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

#: A dotted Python import path, such as ``task`` or ``models.digits``.
IMPORT_PATH_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"

#: A value a user may put in ``hparams`` or ``data.params``.
Scalar = bool | int | float | str


class StrictModel(BaseModel):
    """Strict: unknown keys are errors, so a typo in a spec is reported instead of ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class LenientModel(BaseModel):
    """Data read back from storage or another process: unknown fields are ignored, not errors.

    A newer writer may add fields; an older reader must still read what it knows.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)


class NestedValueError(ValueError):
    """A cross-field rule's failure that belongs to one nested field.

    A model validator sees the whole model, but the mistake is in one field of it: ``loc`` is that
    field's location relative to the model, so that loading reports the line of the field instead
    of the line of the model.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
