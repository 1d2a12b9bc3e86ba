"""Links into Datadog's web app for a query, so a person can look at what the bot read.

The app lives at `app.<site>` for the classic sites (datadoghq.com, datadoghq.eu) and at the
site itself for the regional ones (us3.datadoghq.com, ap1.datadoghq.com). The metric explorer
takes the metric, its scope and its aggregation as `exp_metric`, `exp_scope` and `exp_agg`;
a query it cannot split that way (a formula, a function around the metric) opens the explorer
on its first metric name, which is still the right place to start looking.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

DEFAULT_SITE = "datadoghq.com"
# A Block Kit button's url holds at most 3,000 characters; a longer link is left out.
MAX_URL = 3000
# "avg:trace.http.request.errors{service:checkout,flag:on}.as_rate()" -> agg, metric, scope
_QUERY = re.compile(r"^\s*(?:(?P<agg>[a-z]+):)?(?P<metric>[A-Za-z0-9_.]+)(?:\{(?P<scope>[^}]*)\})?")


def app_base(site: str | None) -> str:
    site = (site or DEFAULT_SITE).strip().removeprefix("https://").strip("/")
    host = f"app.{site}" if site.startswith("datadoghq.") else site
    return f"https://{host}"


def explorer_url(site: str | None, query: str) -> str | None:
    """The metric explorer on `query`'s metric, scope and aggregation; None for an empty query
    (or a link too long for a button)."""
    match = _QUERY.search(query or "")
    if match is None:
        return None
    params = {"exp_metric": match["metric"], "exp_row_type": "metric"}
    if match["scope"]:
        params["exp_scope"] = match["scope"]
    if match["agg"]:
        params["exp_agg"] = match["agg"]
    url = f"{app_base(site)}/metric/explorer?{urlencode(params)}"
    return url if len(url) <= MAX_URL else None
