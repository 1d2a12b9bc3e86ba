"""Who may do what to a rollout, beyond steering it.

Steering (advance, pause, resume, roll back, complete, edit metrics, approvers, digest) is the
owner's, the approvers' and workspace admins' (`rollouts.may_steer`). Two more acts matter:

| act | why it matters | who, by default | may be narrowed to |
| --- | --- | --- | --- |
| ticking or unticking an exit criterion | exit criteria gate the advance | anyone in the channel | steerers |
| sending a stakeholder update | it goes to every stakeholder channel | anyone in the channel | steerers |
| ticking a task | tasks are the team's own to-do list | anyone in the channel | (always anyone) |

Anyone by default, as before: the people who check an exit criterion (QA, the on-call
engineer) are rarely the rollout's owner, and a rollout that needs sign-off says so per rollout
with `/rollout access <feature> exit-criteria steerers`. A refusal is recorded like any other.
"""

from __future__ import annotations

from enum import StrEnum

from storage.models import Rollout

STEERERS = "steerers"
ANYONE = "anyone"
WHO = (STEERERS, ANYONE)


class Act(StrEnum):
    EXIT_CRITERIA = "exit-criteria"
    UPDATES = "updates"


_COLUMN = {Act.EXIT_CRITERIA: "exit_ticks_by", Act.UPDATES: "updates_by"}
WORDS = {Act.EXIT_CRITERIA: "tick exit criteria of", Act.UPDATES: "send updates about"}


def who_may(rollout: Rollout, act: Act) -> str:
    value = getattr(rollout, _COLUMN[act])
    return value if value in WHO else ANYONE


def set_who(rollout: Rollout, act: Act, who: str) -> bool:
    """Returns whether it changed."""
    if who not in WHO:
        raise ValueError(who)
    changed = who_may(rollout, act) != who
    setattr(rollout, _COLUMN[act], who)
    return changed


def describe(rollout: Rollout) -> str:
    def one(act: Act) -> str:
        who = "anyone in the channel" if who_may(rollout, act) == ANYONE else "owner, approvers and admins"
        return f"{act.value.replace('-', ' ')}: {who}"

    return "; ".join(one(act) for act in Act)
