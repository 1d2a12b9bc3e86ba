"""The request bodies `bot.metrics.shapes` builds as plain JSON are the very JSON the client's
request models serialize to: the same keys, in the same order, with the same values."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from datadog_api_client.model_utils import data_to_dict
from datadog_api_client.v2.model.metrics_aggregator import MetricsAggregator
from datadog_api_client.v2.model.metrics_data_source import MetricsDataSource
from datadog_api_client.v2.model.metrics_scalar_query import MetricsScalarQuery
from datadog_api_client.v2.model.metrics_timeseries_query import MetricsTimeseriesQuery
from datadog_api_client.v2.model.query_formula import QueryFormula
from datadog_api_client.v2.model.scalar_formula_query_request import ScalarFormulaQueryRequest
from datadog_api_client.v2.model.scalar_formula_request import ScalarFormulaRequest
from datadog_api_client.v2.model.scalar_formula_request_attributes import ScalarFormulaRequestAttributes
from datadog_api_client.v2.model.scalar_formula_request_queries import ScalarFormulaRequestQueries
from datadog_api_client.v2.model.scalar_formula_request_type import ScalarFormulaRequestType
from datadog_api_client.v2.model.timeseries_formula_query_request import TimeseriesFormulaQueryRequest
from datadog_api_client.v2.model.timeseries_formula_request import TimeseriesFormulaRequest
from datadog_api_client.v2.model.timeseries_formula_request_attributes import (
    TimeseriesFormulaRequestAttributes,
)
from datadog_api_client.v2.model.timeseries_formula_request_queries import TimeseriesFormulaRequestQueries
from datadog_api_client.v2.model.timeseries_formula_request_type import TimeseriesFormulaRequestType

from bot.metrics import MetricQuery
from bot.metrics.shapes import scalar_request, timeseries_request, window_ms

NOW = datetime(2024, 3, 25, 19, 28, 7, 123456, tzinfo=UTC)

QUERIES = [
    MetricQuery(name="latency_p95", query="p95:trace.http.request.duration{service:checkout}"),
    MetricQuery(
        name="hits", query="sum:hits{*}.as_count()", aggregator="sum", window_seconds=900, series_points=7
    ),
    MetricQuery(
        name="error_rate",
        query="",
        aggregator="sum",
        queries=(("errors", "sum:errors{*}.as_count()"), ("hits", "sum:hits{*}.as_count()")),
        formula="100 * errors / hits",
        count_of="hits",
        series_points=0,
    ),
]


def _scalar_model(query: MetricQuery) -> ScalarFormulaQueryRequest:
    from_ms, to_ms = window_ms(query, NOW)
    return ScalarFormulaQueryRequest(
        data=ScalarFormulaRequest(
            type=ScalarFormulaRequestType.SCALAR_REQUEST,
            attributes=ScalarFormulaRequestAttributes(
                _from=from_ms,
                to=to_ms,
                queries=ScalarFormulaRequestQueries(
                    [
                        MetricsScalarQuery(
                            name=name,
                            data_source=MetricsDataSource.METRICS,
                            aggregator=MetricsAggregator(query.aggregator),
                            query=text,
                        )
                        for name, text in query.parts
                    ]
                ),
                formulas=[QueryFormula(formula=formula) for formula in query.formulas],
            ),
        )
    )


def _timeseries_model(query: MetricQuery) -> TimeseriesFormulaQueryRequest:
    from_ms, to_ms = window_ms(query, NOW)
    return TimeseriesFormulaQueryRequest(
        data=TimeseriesFormulaRequest(
            type=TimeseriesFormulaRequestType.TIMESERIES_REQUEST,
            attributes=TimeseriesFormulaRequestAttributes(
                _from=from_ms,
                to=to_ms,
                interval=max(1000, (to_ms - from_ms) // max(1, query.series_points)),
                queries=TimeseriesFormulaRequestQueries(
                    [
                        MetricsTimeseriesQuery(name=name, data_source=MetricsDataSource.METRICS, query=text)
                        for name, text in query.parts
                    ]
                ),
                formulas=[QueryFormula(formula=query.formulas[0])],
            ),
        )
    )


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
def test_a_scalar_body_is_the_models_json(query: MetricQuery) -> None:
    assert json.dumps(scalar_request(query, NOW)) == json.dumps(data_to_dict(_scalar_model(query)))


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
def test_a_timeseries_body_is_the_models_json(query: MetricQuery) -> None:
    assert json.dumps(timeseries_request(query, NOW)) == json.dumps(data_to_dict(_timeseries_model(query)))
