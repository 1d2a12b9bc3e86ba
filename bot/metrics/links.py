"""Links into Datadog's web app for a query the bot read, so a person can look at it: "Open in
Datadog" beside each row of the gate report and on the trigger alert. Pure string work;
nothing is fetched.

Rules:
- The app's host follows the configured site (`DD_SITE`, Datadog's site names): the US1 site
  `datadoghq.com` and the EU site `datadoghq.eu` are served from `app.` + site, the sites with
  their own subdomain (`us3.datadoghq.com`, `ap1.datadoghq.com`, ...) from the site itself,
  and government `ddog-gov.com` from `app.ddog-gov.com`. Unset means `datadoghq.com`.
- The link opens the metric explorer with the query's metric, scope and aggregation
  (`exp_metric`, `exp_scope`, `exp_agg`); a query it cannot split that way (a formula, a
  function around the metric) opens on its first metric name, still the right place to start
  looking. With the gate's window, the explorer shows that window (`from_ts`, `to_ts`).
- A query with no metric name in it, or a link longer than a Block Kit button's url may be
  (3,000 characters), gets no link.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import urlencode

DEFAULT_SITE = "datadoghq.com"
MAX_URL = 3000  # a Block Kit button's url
_OWN_SUBDOMAIN = re.compile(r"^(us\d|ap\d|uk\d|eu\d)\.")
# "avg:trace.http.request.errors{service:checkout,flag:on}.as_rate()" -> agg, metric, scope
_QUERY = re.compile(r"^\s*(?:(?P<agg>[a-z]+):)?(?P<metric>[A-Za-z][\w.]*)(?:\{(?P<scope>[^}]*)\})?")
# The first metric name anywhere: what stands before a scope's brace.
_ANY_METRIC = re.compile(r"(?:^|[:(,\s])([a-zA-Z][\w.]*)\{")


def app_base(site: str | None) -> str:
    """`https://app.datadoghq.com` for the site the API keys belong to."""
    site = (site or DEFAULT_SITE).strip().lower().removeprefix("https://").removeprefix("app.").strip("/")
    if _OWN_SUBDOMAIN.match(site):
        return f"https://{site}"
    return f"https://app.{site}"


def explorer_url(
    site: str | None, query: str, *, end: datetime | None = None, window: timedelta | None = None
) -> str | None:
    """The metric explorer on `query` (over the `window` that ends at `end`, when given), or
    None when the query names no metric or the link would be too long for a button."""
    query = query or ""
    whole = _QUERY.match(query)
    if whole is not None and whole["scope"] is not None:
        params = {"exp_metric": whole["metric"], "exp_row_type": "metric", "exp_scope": whole["scope"]}
        if whole["agg"]:
            params["exp_agg"] = whole["agg"]
    else:
        found = _ANY_METRIC.search(query)
        if found is None:
            return None
        params = {"exp_metric": found.group(1), "exp_row_type": "metric"}
    if end is not None and window is not None:
        params |= {
            "from_ts": str(int((end - window).timestamp() * 1000)),
            "to_ts": str(int(end.timestamp() * 1000)),
            "live": "false",
        }
    url = f"{app_base(site)}/metric/explorer?{urlencode(params)}"
    return url if len(url) <= MAX_URL else None
