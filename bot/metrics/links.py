"""Links into Datadog's web app for a metric the gate read: "Open in Datadog" beside each row
of the gate report. Pure string work; nothing is fetched.

Rules:
- The app's host follows the configured site (`DD_SITE`, Datadog's site names): the US1 site
  `datadoghq.com` and the EU site `datadoghq.eu` are served from `app.` + site, the sites with
  their own subdomain (`us3.datadoghq.com`, `ap1.datadoghq.com`, ...) from the site itself,
  and government `ddog-gov.com` from `app.ddog-gov.com`. Unset means `datadoghq.com`.
- The link opens the metric explorer over the gate's window, on the query exactly as sent
  (placeholders filled): `exp_query` holds the whole query, so a formula or a scope with
  commas survives, and `exp_metric` the first metric name, which the explorer needs to draw.
- A query with no metric name in it (nothing to explore) gets no link.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import urlencode

DEFAULT_SITE = "datadoghq.com"
_OWN_SUBDOMAIN = re.compile(r"^(us\d|ap\d|uk\d|eu\d)\.")
# "avg:trace.http.request.errors{service:checkout}": the metric name is what stands between
# the aggregator's colon and the scope's brace.
_METRIC = re.compile(r"(?:^|[:(,\s])([a-zA-Z][\w.]*)\{")


def app_host(site: str | None) -> str:
    """`https://app.datadoghq.com` for the site the API keys belong to."""
    site = (site or DEFAULT_SITE).strip().lower().removeprefix("https://").removeprefix("app.").strip("/")
    if _OWN_SUBDOMAIN.match(site):
        return f"https://{site}"
    return f"https://app.{site}"


def explorer_url(site: str | None, query: str, *, end: datetime, window: timedelta) -> str | None:
    """The metric explorer on `query` over the `window` that ends at `end`, or None when the
    query names no metric."""
    found = _METRIC.search(query)
    if found is None:
        return None
    params = {
        "exp_metric": found.group(1),
        "exp_query": query,
        "from_ts": str(int((end - window).timestamp() * 1000)),
        "to_ts": str(int(end.timestamp() * 1000)),
        "live": "false",
    }
    return f"{app_host(site)}/metric/explorer?{urlencode(params)}"
