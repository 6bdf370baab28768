"""The teams file (``cluster/teams.yaml``): who shares the cluster, and on what terms.

One definition, two enforcers: the control plane's admission queue reads it on every platform,
and on Kubernetes the same file is rendered into Kueue objects (a ClusterQueue per team in its
cohort, a LocalQueue and a ResourceQuota in the team's namespace, WorkloadPriorityClasses).

Pure pydantic models: no I/O beyond :func:`load_teams`, no ray. Quantities are plain numbers here;
renderers write them as Kubernetes quantity strings.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from flywheel.specs.base import SLUG_PATTERN, NestedValueError, StrictModel
from flywheel.specs.loading import load_model

#: Longest team name: derived names (``flywheel-team-<name>``, queue and object names) must stay
#: within Kubernetes' 63-character label and DNS-label limits.
MAX_TEAM_NAME_CHARS = 40

#: Names no team may take: the admin identity and the platform's own namespace.
RESERVED_TEAM_NAMES = frozenset({"admin", "flywheel", "system"})


class Resources(StrictModel):
    """An amount of each resource the platform accounts for."""

    cpu: float = Field(default=0.0, ge=0.0, description="CPU cores (may be a fraction).")
    gpu: int = Field(default=0, ge=0, description="GPUs (`nvidia.com/gpu` on Kubernetes).")
    memory_gib: float = Field(default=0.0, ge=0.0, description="Memory in GiB.")

    def fits_within(self, other: Resources) -> bool:
        """Whether every amount here is at most the same amount in ``other``."""
        return (
            self.cpu <= other.cpu and self.gpu <= other.gpu and self.memory_gib <= other.memory_gib
        )


class PriorityClass(StrictModel):
    """A named priority; higher values are admitted first and may preempt lower ones."""

    name: str = Field(pattern=SLUG_PATTERN, description="Name (a WorkloadPriorityClass on Kueue).")
    value: int = Field(ge=0, le=1_000_000_000, description="Priority; higher wins.")
    description: str = Field(default="", description="What the class is for.")


class TeamSpec(StrictModel):
    """One team: its quota, how it shares it, and its default priority."""

    name: str = Field(
        pattern=SLUG_PATTERN,
        max_length=MAX_TEAM_NAME_CHARS,
        description="Team name: the `team:` of its experiment specs and its token's team.",
    )
    description: str = Field(default="", description="Who the team is.")
    priority: str = Field(
        default="normal", description="Name of the priority class its experiments get."
    )
    cohort: str = Field(
        default="shared",
        pattern=SLUG_PATTERN,
        description="Teams in one cohort lend idle quota to each other (a Kueue cohort).",
    )
    quota: Resources = Field(description="Nominal quota: what the team is guaranteed.")
    borrowing_limit: Resources = Field(
        default_factory=Resources,
        description="Most the team may use beyond its quota, borrowed from its cohort's idle "
        "quota; zero: it never borrows.",
    )
    lending_limit: Resources | None = Field(
        default=None,
        description="Most of its idle quota the team lends to its cohort; unset: all of it.",
    )
    fair_share_weight: float = Field(
        default=1.0, gt=0.0, le=1000.0, description="Weight of the team in fair sharing."
    )
    max_concurrent_experiments: int = Field(
        default=4, ge=1, le=10_000, description="Experiments admitted at once at most."
    )

    @model_validator(mode="after")
    def _lends_at_most_its_quota(self) -> TeamSpec:
        if self.lending_limit is not None and not self.lending_limit.fits_within(self.quota):
            raise NestedValueError(
                ("lending_limit",), "a team cannot lend more than its quota: lower lending_limit"
            )
        return self


class TeamsSpec(StrictModel):
    """The whole teams file."""

    priority_classes: list[PriorityClass] = Field(
        default_factory=lambda: [
            PriorityClass(name="low", value=100, description="Best effort; preempted first."),
            PriorityClass(name="normal", value=500, description="The default."),
            PriorityClass(name="high", value=1000, description="Deadlines."),
        ],
        min_length=1,
        description="Named priorities teams refer to.",
    )
    teams: list[TeamSpec] = Field(min_length=1, description="The teams sharing the cluster.")

    @model_validator(mode="after")
    def _names_resolve(self) -> TeamsSpec:
        _require_unique([c.name for c in self.priority_classes], "priority_classes")
        _require_unique([t.name for t in self.teams], "teams")
        known = {c.name for c in self.priority_classes}
        for index, team in enumerate(self.teams):
            if team.name in RESERVED_TEAM_NAMES:
                raise NestedValueError(
                    ("teams", index, "name"), f"'{team.name}' is reserved: choose another name"
                )
            if team.priority not in known:
                raise NestedValueError(
                    ("teams", index, "priority"),
                    f"unknown priority class '{team.priority}'; known: {', '.join(sorted(known))}",
                )
        return self

    def team(self, name: str) -> TeamSpec:
        """The team called ``name``; KeyError if there is none."""
        for team in self.teams:
            if team.name == name:
                return team
        raise KeyError(name)

    def priority_value(self, class_name: str) -> int:
        """The value of a priority class; KeyError if there is none."""
        for priority_class in self.priority_classes:
            if priority_class.name == class_name:
                return priority_class.value
        raise KeyError(class_name)

    def cohort_members(self, cohort: str) -> list[TeamSpec]:
        """The teams of one cohort, in file order."""
        return [team for team in self.teams if team.cohort == cohort]


def load_teams(path: str | Path) -> TeamsSpec:
    """Read and validate a teams file; raise :class:`~flywheel.errors.SpecError` if invalid."""
    return load_model(Path(path), TeamsSpec)


def _require_unique(names: list[str], field: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise NestedValueError((field, index, "name"), f"'{name}' appears twice")
        seen.add(name)
