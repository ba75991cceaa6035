"""Quantiles from Prometheus histogram buckets, computed here rather than in PromQL.

The operator fetches bucket rates for every service in one query and takes each service's own SLO
percentile locally, so the number of queries per tick does not grow with the number of services
or with the variety of percentiles they ask for. Same interpolation as PromQL's
`histogram_quantile`: linear within the bucket holding the rank.

Worked number: buckets le=0.5: 90, le=1: 98, le=+Inf: 100 requests/s; p95 has rank 95, inside
(0.5, 1] which holds 90..98 -> 0.5 + 0.5 x (95 - 90) / 8 = 0.8125 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """`q` in [0, 1] over cumulative (upper bound, count) pairs; None when nothing was observed."""
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0 or math.isnan(total):
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if math.isinf(upper):
                # The rank lies in the +Inf bucket: PromQL answers the last finite bound.
                return lower_bound
            width = count - lower_count
            if width <= 0:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / width
        lower_bound, lower_count = upper, count
    return lower_bound
