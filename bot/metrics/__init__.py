"""Metric snapshots that gate a rollout advance."""

from bot.metrics.base import (
    MetricQuery,
    MetricReading,
    MetricsSource,
    StaticMetricsSource,
    describe_window,
)
from bot.metrics.datadog import DatadogMetricsSource

__all__ = [
    "DatadogMetricsSource",
    "MetricQuery",
    "MetricReading",
    "MetricsSource",
    "StaticMetricsSource",
    "describe_window",
]
