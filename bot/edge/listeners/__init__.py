"""Thin Slack listeners: parse the payload, ack at once, call a flow, send the reply."""

from slack_bolt import App

from bot.edge.listeners import actions, commands, events, fallbacks, metric_views, views
from bot.services import Services


def register_listeners(app: App, svc: Services) -> None:
    commands.register(app, svc)
    actions.register(app, svc)
    views.register(app, svc)
    metric_views.register(app, svc)
    events.register(app, svc)
    fallbacks.register(app)  # last: only what no listener above claimed
