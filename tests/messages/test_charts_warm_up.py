"""The work process warms the chart code up at start: that must never log a traceback."""

from __future__ import annotations

import logging

import pytest

from messages import charts


def test_warming_up_draws_without_an_error(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="messages.charts"):
        charts.warm_up()
    assert caplog.records == []
