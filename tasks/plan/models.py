"""A plan: one entry per resource a deploy (or a teardown) would create, update, delete or
leave alone, and the schema `tomcat-fleet.plan/1` `--json` prints. Exit codes follow
`terraform plan -detailed-exitcode`: 0 nothing to do, 2 changes (1 is an error)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

SCHEMA = "tomcat-fleet.plan/1"
Action = Literal["create", "update", "delete", "no-op"]
ACTIONS: tuple[Action, ...] = ("create", "update", "delete", "no-op")
EXIT_NO_CHANGES = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2


class PlanEntry(BaseModel):
    """One resource: the deploy stage that owns it (for a teardown, the stage that made it),
    its kind and name, the action, the field an update changes, and why."""

    model_config = ConfigDict(frozen=True)

    stage: int
    kind: str
    name: str
    action: Action
    field: str = ""  # what an update changes: "ingress rule", "target group membership", ...
    reason: str = ""

    @property
    def changes(self) -> bool:
        return self.action != "no-op"


class Plan(BaseModel):
    """What `deploy --plan` / `teardown --plan` found; `changes` counts the entries that are
    not no-op."""

    schema_: str = Field(default=SCHEMA, alias="schema")
    deployment_name: str
    command: Literal["deploy", "teardown"] = "deploy"
    stages: list[int] = Field(default_factory=list)  # the stages planned (deploy)
    entries: list[PlanEntry] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def changes(self) -> int:
        return sum(e.changes for e in self.entries)

    @property
    def exit_code(self) -> int:
        return EXIT_CHANGES if self.changes else EXIT_NO_CHANGES

    def counts(self) -> dict[str, int]:
        """Entries per action, every action named (0 when none)."""
        return {a: sum(e.action == a for e in self.entries) for a in ACTIONS}

    def as_json(self) -> str:
        """The `--json` document, keys in a stable order."""
        import json

        doc = {
            "schema": SCHEMA,
            "command": self.command,
            "deployment_name": self.deployment_name,
            "stages": self.stages,
            "changes": self.changes,
            "counts": self.counts(),
            "entries": [e.model_dump() for e in self.entries],
        }
        return json.dumps(doc, indent=1)
