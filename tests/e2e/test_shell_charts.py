"""The shell says where a chart would be posted and saves it to a file it names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image


def test_the_shell_saves_the_chart_of_an_advance_and_names_the_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DD_", "SLACK_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'shell.db'}"
    env["ROLLOUT_SHELL_FILES"] = str(tmp_path / "files")
    script = ["set error_rate=0.3", "/rollout start checkout-v2 aggressive", "later 2d", "/rollout advance"]
    out = subprocess.run(
        [sys.executable, "-m", "bot", "shell"],
        input="\n".join(script) + "\nquit\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        check=True,
    ).stdout
    posted = re.search(
        r"\[file\] posted in the thread of (\S+) in C0SHELL: checkout-v2: gate closed at 5% \(2 blockers\)",
        out,
    )
    assert posted, out
    written = re.search(r"checkout-v2-gate-\S+\.png \([\d,]+ bytes\) written to (\S+\.png)", out)
    assert written, out
    path = Path(written.group(1))
    assert path.parent == tmp_path / "files"
    Image.open(path).load()
    assert "The chart of this check follows in" in out
