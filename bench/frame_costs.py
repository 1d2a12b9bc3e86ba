"""The fixed cost every piece of queued work pays in the work process, measured piece by piece
in one thread (CPU time of that thread only, so other processes on a busy machine hardly
move the figures): the queue's claim cycle per request, and one reply through a response_url.

Queue: N requests arrive one at a time (each row inserted untimed, as the web process
would) and are claimed the way the work loop claims them. `two claims` is the loop that claimed a row and then, woken
by the finished work, claimed again to delete it; `one claim` is the loop that deletes a
finished row with the next row's claim. Run it on another checkout (PYTHONPATH=that checkout)
for that checkout's `claim`.

Reply: R answers to a local Slack's response_url through Bolt's own `respond` (slack_sdk's
WebhookClient over urllib: a new connection each) and through `RespondReplier` (the same JSON
over the process's pooled connections, where the checkout has them), over plain HTTP and over
TLS as Slack is reached (a self-signed certificate made with `openssl`): on loopback a new
connection costs little CPU, a TLS handshake a few milliseconds.

Run: .venv/bin/python bench/frame_costs.py   (knobs: BENCH_FRAME_N [2000], BENCH_FRAME_R [500])
"""

from __future__ import annotations

import os
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from slack_bolt import Respond
from sqlalchemy import insert

from bot.devtools.local_slack import LocalSlack
from bot.edge.listeners.replies import RespondReplier
from bot.edge.workqueue import claim
from messages.blocks import text_message
from storage.db import Database
from storage.migrate import upgrade
from storage.models import PendingWork, utcnow

N = int(os.environ.get("BENCH_FRAME_N", "2000"))
R = int(os.environ.get("BENCH_FRAME_R", "500"))


def per_call_ms(run: Callable[[], None], count: int) -> float:
    start = time.thread_time()
    run()
    return (time.thread_time() - start) / count * 1000


ROW = {"function_name": "work", "body": "x" * 400, "headers": {"content-type": ["x"]}}


def queue_figures(folder: Path) -> None:
    url = f"sqlite:///{folder / 'queue.db'}"
    upgrade(url)
    db = Database(url)

    def arrive() -> None:  # untimed: the web process's insert
        with db.writing() as conn:
            conn.execute(insert(PendingWork), [{**ROW, "created_at": utcnow()}])

    def two_claims() -> float:
        spent = 0.0
        for _ in range(N):
            arrive()
            start = time.thread_time()
            [work] = claim(db, 1, lease_s=60, owner="me")  # the nudge's claim
            assert claim(db, 1, lease_s=60, owner="me", done=[work.id]) == []  # woken by the finish
            spent += time.thread_time() - start
        return spent

    def one_claim() -> float:
        spent, done = 0.0, []
        for _ in range(N):
            arrive()
            start = time.thread_time()
            [work] = claim(db, 1, lease_s=60, owner="me", done=done)  # deletes the last one too
            done = [work.id]
            spent += time.thread_time() - start
        return spent

    for name, run in (("two claims", two_claims), ("one claim", one_claim)):
        print(f"  queue, {name} per request: {run() / N * 1000:.3f} ms CPU")
    db.dispose()


def tls_context(folder: Path) -> ssl.SSLContext | None:
    """A self-signed certificate for 127.0.0.1 (openssl's command line), trusted through
    SSL_CERT_FILE by both clients' default contexts: Slack is reached over TLS."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    command += " -addext subjectAltName=IP:127.0.0.1"
    made = subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)], capture_output=True, check=False
    )
    if made.returncode != 0:
        return None
    os.environ["SSL_CERT_FILE"] = str(cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def reply_figures(tls: ssl.SSLContext | None) -> None:
    message = text_message("The answer, with *some* text in it.")
    with LocalSlack() as slack:
        url = slack.response_url("bench")
        if tls is not None:
            server = slack._server
            assert server is not None
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            url = url.replace("http://", "https://")

        def bolts() -> None:
            respond = Respond(response_url=url)
            for _ in range(R):
                respond(response_type="ephemeral", replace_original=False, **message.as_kwargs())

        def ours() -> None:
            replier = RespondReplier(Respond(response_url=url))
            for _ in range(R):
                replier(message)

        over = "TLS" if tls is not None else "plain HTTP"
        for name, run in (("Bolt's respond", bolts), ("RespondReplier", ours)) * 2:
            print(f"  reply over {over}, {name}: {per_call_ms(run, R):.3f} ms CPU per answer")


def main() -> int:
    print(f"load average {os.getloadavg()[0]:.1f}; {N} requests, {R} replies; CPU of this thread only")
    with tempfile.TemporaryDirectory() as folder:
        queue_figures(Path(folder))
        reply_figures(None)
        tls = tls_context(Path(folder))
        if tls is None:
            print("  (no openssl: no figures over TLS)")
        else:
            reply_figures(tls)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
