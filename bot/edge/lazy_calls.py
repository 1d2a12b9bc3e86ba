"""Queued work runs its lazy listener function directly, with Bolt's own arguments.

A queued request already names the lazy function it is for (`x-slack-bolt-lazy-function-name`,
set by Bolt in the web process, where the request was verified, passed the middleware and was
matched). `App.dispatch` in the work process would do all of that again: a Web API client built
for the request, the global middleware, and every listener's matchers tried in turn until one
matches (each builds the whole set of Bolt's keyword arguments), about a quarter of a
millisecond per request before the function runs. Here only the listeners that have a lazy
function of that name are matched, in the order they were registered (two listeners may have
functions of the same name: a button's and a form's `rollback`), and the first that matches
runs its function as Bolt's lazy runner runs it (`build_runnable_function`: the same keyword
arguments, the same logging of what it raises).

Rules:
- Bolt stays the one that parses and matches: the web process does it for every request, and
  here a listener's own matchers decide among the namesakes.
- Only functions whose arguments need nothing a middleware provides (`context`, `say`, the
  authorisation's ids) run this way; `client` is the app's client, whose token is the one
  Bolt's per-request client would carry. Anything else, a listener with middleware of its own,
  a name no listener has any more (work queued by another version), or a body a matcher
  cannot read goes through `App.dispatch`, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.kwargs_injection import build_required_kwargs
from slack_bolt.listener import Listener
from slack_bolt.util.utils import get_arg_names_of_callable, get_name_for_callable

# What a lazy function may ask for to be called directly: all of it comes from the request
# itself, or is the app's client.
DIRECT_ARGS = frozenset(
    {"body", "payload", "command", "action", "view", "event", "request", "respond", "client", "logger"}
)


@dataclass(frozen=True)
class Candidate:
    """A listener's lazy function, and what Bolt would build for it: the names of its
    arguments (read once: `inspect.signature` per request cost more than the matching)."""

    listener: Listener
    function: Callable[..., None]
    arg_names: tuple[str, ...]

    @property
    def direct(self) -> bool:
        return not self.listener.middleware and set(self.arg_names) <= DIRECT_ARGS


class LazyCalls:
    """The app's lazy functions by name, read from its listeners once."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._by_name: dict[str, list[Candidate]] | None = None
        self._seen = -1

    def _table(self) -> dict[str, list[Candidate]]:
        listeners: list[Listener] = list(getattr(self._app, "_listeners", []))
        if self._by_name is None or self._seen != len(listeners):  # listeners added since
            table: dict[str, list[Candidate]] = {}
            for listener in listeners:
                for function in listener.lazy_functions:
                    found = Candidate(listener, function, tuple(get_arg_names_of_callable(function)))
                    table.setdefault(get_name_for_callable(function), []).append(found)
            self._by_name, self._seen = table, len(listeners)
        return self._by_name

    def dispatch(self, request: BoltRequest) -> None:
        """Runs the lazy function a queued (lazy-only) request names."""
        try:
            found = self._direct(request)
        except Exception:  # noqa: BLE001 - a body the matchers cannot read: Bolt answers it as it would
            found = None
        if found is None:
            self._app.dispatch(request)
            return
        # As Bolt's lazy runner calls it (`build_runnable_function`), with the names read once.
        logger = self._app.logger
        try:
            kwargs = build_required_kwargs(
                logger=logger,
                required_arg_names=list(found.arg_names),
                request=request,
                response=None,
                this_func=found.function,
            )
            found.function(**kwargs)
        except Exception as e:  # noqa: BLE001 - Bolt's own words for a lazy function that raised
            logger.error(f"Failed to run an internal function ({e})")

    def _direct(self, request: BoltRequest) -> Candidate | None:
        name = request.lazy_function_name
        if not request.lazy_only or not name:
            return None
        candidates = self._table().get(name)
        if not candidates:
            return None
        # What the matchers' arguments are built from (Bolt's `respond` reads the client's proxy).
        request.context["client"] = self._app.client
        request.context["logger"] = self._app.logger
        response = BoltResponse(status=200, body="")
        for candidate in candidates:
            if candidate.listener.matches(req=request, resp=response):
                return candidate if candidate.direct else None
        return None
