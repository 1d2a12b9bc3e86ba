"""Domain errors. The app's error handler turns each into a polite ephemeral answer."""

from __future__ import annotations


class UsageError(ValueError):
    """A request that cannot be understood: what was wrong, and which subcommand it was for
    (the edge shows that subcommand's right form beside the problem)."""

    def __init__(self, problem: str, subcommand: str | None = None, *, field: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.subcommand = subcommand
        self.field = field  # the form field it is about, where it came from a form


class RolloutError(Exception):
    """A request the rules refuse, in words for the user.

    Names people typed (a feature called `<!channel>`) go in as `values`, filled into
    `{placeholders}` of the text: `str(error)` is plain text, and the Slack answer escapes the
    values, never the bot's own mrkdwn around them."""

    def __init__(self, text: str, **values: object) -> None:
        super().__init__(text.format(**values) if values else text)
        self.text = text
        self.values = values


class RolloutNotFound(RolloutError):
    pass


class DuplicateFeature(RolloutError):
    pass


class NotAllowed(RolloutError):
    """A refusal on who the actor is. `rollout_id` set: the answer offers to ask the owner for
    access (a refusal should be a path, not a dead end)."""

    def __init__(self, text: str, *, rollout_id: int | None = None, **values: object) -> None:
        super().__init__(text, **values)
        self.rollout_id = rollout_id


class InvalidTransition(RolloutError):
    pass


class AlreadyMoved(RolloutError):
    """Someone else's advance got there first."""


class AdvanceClosed(RolloutError):
    """A person's advance inside a freeze or outside the allowed hours; `token` is where the
    rollout stands, for the "Advance anyway…" button that takes it through with a reason."""

    def __init__(self, text: str, *, token: str, **values: object) -> None:
        super().__init__(text, **values)
        self.token = token


class NeedsChoice(RolloutError):
    """The channel has several open rollouts and the command named none."""

    def __init__(self, message: str, choices: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.choices = choices


class NotInChannel(RolloutError):
    def __init__(self, channel_id: str) -> None:
        super().__init__(
            f"I'm not a member of <#{channel_id}>, and it is private so I cannot join by myself. "
            "Invite me with `/invite @Rollout Bot` and try again."
        )
        self.channel_id = channel_id


class FlagWriteFailed(RolloutError):
    """The flag service refused or failed a write; `reason` is its own words."""

    def __init__(self, text: str, *, reason: str, retryable: bool, **values: object) -> None:
        super().__init__(text, reason=reason, **values)
        self.reason = reason
        self.retryable = retryable
