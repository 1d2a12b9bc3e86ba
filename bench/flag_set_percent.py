"""How long one UnleashProvider.set_percent takes against a local real Unleash.

    .ci/unleash.sh start && .venv/bin/python bench/flag_set_percent.py

Uses TEST_UNLEASH_URL / TEST_UNLEASH_TOKEN when set, else the server `.ci/unleash.sh start`
runs (127.0.0.1:4242). Creates one flag of its own, then times:
- the first set_percent (read, create the strategy, turn the environment on),
- 20 further set_percent calls alternating 25 / 50 with the remembered strategy id
  (read + update), the steady state of a phased rollout;
and, as the baseline measured in the same run, 20 plain reads of the flag (one round trip
on the same kind of connection). Talks only to 127.0.0.1; finishes in a few seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request
import uuid

from bot.flags.unleash import UnleashProvider

URL = os.environ.get("TEST_UNLEASH_URL", "http://127.0.0.1:4242").rstrip("/")
TOKEN = os.environ.get("TEST_UNLEASH_TOKEN", "*:*.rollout-bot-test-admin-token")
RUNS = 20


def _create_flag() -> str:
    name = f"rb-bench-{uuid.uuid4().hex[:10]}"
    request = urllib.request.Request(
        f"{URL}/api/admin/projects/default/features",
        data=json.dumps({"name": name, "type": "release"}).encode(),
        method="POST",
        headers={"Authorization": TOKEN, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    return name


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _summary(label: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    print(
        f"{label:<34} median {_ms(statistics.median(ordered))}  p90 {_ms(p90)}  "
        f"min {_ms(ordered[0])}  max {_ms(ordered[-1])}  (n={len(ordered)})"
    )


def main() -> None:
    print(f"load average at start: {os.getloadavg()}")
    provider = UnleashProvider(URL, TOKEN)
    print(provider.check())
    flag = _create_flag()
    provider.read(flag)  # warm the connection pool, as a running bot has it

    started = time.perf_counter()
    state = provider.set_percent(flag, 1)
    first = time.perf_counter() - started

    updates: list[float] = []
    for i in range(RUNS):
        percent = 25 if i % 2 == 0 else 50
        started = time.perf_counter()
        state = provider.set_percent(flag, percent, strategy_id=state.strategy_id)
        updates.append(time.perf_counter() - started)
        assert state.percent == percent

    reads: list[float] = []
    for _ in range(RUNS):
        started = time.perf_counter()
        provider.read(flag, strategy_id=state.strategy_id)
        reads.append(time.perf_counter() - started)

    print(f"first set_percent (create + on):    {_ms(first)}")
    _summary("set_percent (read + update)", updates)
    _summary("baseline: read (one round trip)", reads)
    print(f"ratio set_percent / read (medians): {statistics.median(updates) / statistics.median(reads):.2f}")
    print(f"load average at end: {os.getloadavg()}")
    provider.close()


if __name__ == "__main__":
    main()
