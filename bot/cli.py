"""rollout-bot serve | db upgrade | check"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from bot.config import ConfigError, Settings, load_settings

log = logging.getLogger("rollout-bot")


def _setup_logging() -> None:
    """LOG_FORMAT=json|text (JSON unless stderr is a terminal), LOG_LEVEL; bot/observe/logs.py."""
    from bot.observe.logs import setup_logging

    setup_logging(os.environ.get("LOG_LEVEL", "INFO"))


def upgrade_database(settings: Settings) -> None:
    from storage.migrate import upgrade
    from storage.urls import queue_url

    upgrade(settings.database_url)
    if queue_url(settings.database_url) != settings.database_url:
        upgrade(queue_url(settings.database_url))


def cmd_serve(settings: Settings) -> int:
    settings.require_slack()
    from bot.runtime import serve

    upgrade_database(settings)
    serve(settings)
    return 0


def _metrics_for_serve() -> None:
    """Before prometheus-client is first imported: the folder every process of `serve` writes
    its metrics to (the work process inherits the variable), removed when serve ends."""
    import atexit

    from bot.observe import MULTIPROC_ENV, multiprocess_dir, remove_multiprocess_dir

    made = not os.environ.get(MULTIPROC_ENV, "").strip()
    folder = multiprocess_dir()
    if folder is not None and made:
        pid = os.getpid()

        # gunicorn's worker is a fork of this process: only this one removes the folder.
        def remove() -> None:
            if os.getpid() == pid:
                remove_multiprocess_dir(folder)

        atexit.register(remove)


def cmd_db_upgrade(settings: Settings) -> int:
    upgrade_database(settings)
    print(f"database is at the newest schema: {settings.database_url.split('@')[-1]}")
    return 0


def cmd_check(settings: Settings) -> int:
    settings.require_slack()
    print("settings are complete")
    from bot.flags import FlagError
    from bot.runtime import flag_provider

    provider = flag_provider(settings)
    if provider is None:
        print("flags: no FLAG_PROVIDER; people set the feature flag, the bot coordinates")
        return 0
    try:
        print(f"flags: {provider.check()}")
    except FlagError as error:
        print(f"rollout-bot: flags: {provider.name} could not be reached: {error.reason}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollout-bot", description="Runs phased feature rollouts from Slack."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the bot (HTTP on $PORT, or Socket Mode with SLACK_APP_TOKEN)")
    sub.add_parser("work", help="run the work behind the acks, the outbox and due jobs (serve starts one)")
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="migrate the database to the newest schema")
    sub.add_parser("check", help="check the settings in the environment")
    plan = sub.add_parser("plan", help="plans as Markdown documents")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True, metavar="ACTION")
    imp = plan_sub.add_parser("import", help="turn a plan document into a named template")
    imp.add_argument("file", help="the Markdown plan (- for standard input)")
    imp.add_argument("--name", help="the template's name (default: from the file name)")
    exp = plan_sub.add_parser("export", help="print a rollout as its plan document, results filled in")
    exp.add_argument("feature")
    exp.add_argument("--team", help="the Slack workspace id, when the name is used in several")
    exp.add_argument(
        "--output", "-o", metavar="FILE.md", help="write the document here and its charts (PNG) beside it"
    )
    sub.add_parser(
        "shell", help="try the bot in this terminal: no Slack app needed (local SQLite by default)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        _metrics_for_serve()
    _setup_logging()
    try:
        settings = load_settings()
        if args.command == "serve":
            return cmd_serve(settings)
        if args.command == "work":
            settings.require_slack()
            from bot.runtime import work

            upgrade_database(settings)
            work(settings)
            return 0
        if args.command == "db":
            return cmd_db_upgrade(settings)
        if args.command == "check":
            return cmd_check(settings)
        if args.command == "plan":
            from bot.devtools import plan_cli

            upgrade_database(settings)
            if args.plan_command == "import":
                return plan_cli.import_file(settings, args.file, args.name)
            return plan_cli.export_feature(settings, args.feature, args.team, args.output)
        if args.command == "shell":
            from bot.devtools.shell import run_shell

            logging.getLogger().setLevel(logging.WARNING)
            return run_shell()
    except ConfigError as error:
        print(f"rollout-bot: {error}", file=sys.stderr)
        return 2
    return 1
