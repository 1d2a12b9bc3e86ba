"""What must stay out of a start-up: `rollout-bot --help` loads neither the database layer nor
the plotting library, and the web process (the Bolt app behind the HTTP server) never imports
matplotlib: only the work process draws charts, importing it when it first draws one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("matplotlib", "PIL", "numpy")


def imported_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_help_stays_light() -> None:
    loaded = imported_after(
        "import contextlib, io, sys\n"
        "from bot.cli import main\n"
        "sys.argv = ['rollout-bot', '--help']\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()\n"
    )
    assert "bot" in loaded
    assert not loaded & {"sqlalchemy", *HEAVY}


def test_the_web_process_starts_without_the_plotting_library(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'web.db'}"
    loaded = imported_after(
        "from bot.app import build_app\n"
        "from bot.config import load_settings\n"
        "from bot.edge.web import build_web\n"
        "from bot.runtime import build_services\n"
        "settings = load_settings({'SLACK_BOT_TOKEN': 'xoxb-test', 'SLACK_SIGNING_SECRET': 's',"
        f" 'DATABASE_URL': {database!r}}})\n"
        "svc = build_services(settings)\n"
        "build_web(build_app(svc, token_verification=False), svc.db, 's')\n"
    )
    assert {"bot", "slack_bolt", "flask"} <= loaded
    assert not loaded & set(HEAVY)


def test_drawing_a_chart_does_import_it() -> None:
    # The probe above would pass trivially if charts never loaded matplotlib at all.
    loaded = imported_after(
        "from datetime import UTC, datetime\n"
        "from messages.charts import gate_chart\n"
        "from messages.views import GateChartView\n"
        "now = datetime(2026, 1, 1, tzinfo=UTC)\n"
        "gate_chart(GateChartView('f', 't', 'UTC', now, now, ()))\n"
    )
    assert "matplotlib" in loaded
