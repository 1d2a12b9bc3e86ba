"""Domain errors. The app's error handler turns each into a polite ephemeral answer."""

from __future__ import annotations


class RolloutError(Exception):
    """A request the rules refuse; `str(error)` is what the user reads."""


class RolloutNotFound(RolloutError):
    pass


class DuplicateFeature(RolloutError):
    pass


class NotAllowed(RolloutError):
    pass


class InvalidTransition(RolloutError):
    pass


class AlreadyMoved(RolloutError):
    """Someone else's advance got there first."""


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
