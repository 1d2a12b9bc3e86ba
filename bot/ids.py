"""Every action_id, block_id and callback_id the bot uses, in one place."""

from enum import StrEnum


class Action(StrEnum):
    CHECKLIST_TOGGLE = "checklist_toggle"
    ADVANCE = "advance"
    ADVANCE_ANYWAY = "advance_anyway"
    SNAPSHOT = "snapshot"
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"
    PICK_ROLLOUT = "pick_rollout"
    OPEN_ROLLOUT = "open_rollout"
    FLAG_APPLY_PLAN = "flag_apply_plan"  # a drifted flag: write the plan's percentage
    FLAG_ADOPT = "flag_adopt"  # a drifted flag: accept the flag's percentage
    TIMELINE_OLDER = "timeline_older"  # the next, older page of `/rollout timeline`
    REQUEST_ACCESS = "request_access"  # on a refusal: ask the owner to be made an approver
    APPROVER_ADD = "approver_add"  # on an access request: the owner adds the person who asked
    OPEN_DATADOG = "open_datadog"  # a link button to the metric in Datadog (Slack still sends a click)
    AUTO_ON = "auto_on"  # the status message: turn auto-advance on
    AUTO_OFF = "auto_off"  # … and off


class Block(StrEnum):
    HEADER = "header"
    STEPS = "steps"
    CHECKLIST = "checklist"  # followed by ":<phase position>:<chunk>"
    CONTROLS = "controls"
    START_FEATURE = "start_feature"
    START_TEMPLATE = "start_template"
    START_OWNER = "start_owner"
    START_STAKEHOLDERS = "start_stakeholders"
    START_FLAG = "start_flag"
    REASON = "reason"
    IMPORT_NAME = "import_name"
    IMPORT_TEXT = "import_text"


class View(StrEnum):
    START = "start_rollout"
    OVERRIDE = "advance_override"
    ROLLBACK = "rollback_confirm"
    METRICS = "edit_metrics"
    IMPORT = "import_plan"
