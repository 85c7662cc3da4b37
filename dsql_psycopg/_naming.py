"""How DSQL names things: cluster ids, regions, endpoint hosts, URLs.

DSQL Local imports these too, so that the client and the endpoint agree on
one spelling of each.
"""

from __future__ import annotations

import re

CLUSTER_ID = re.compile(r"[a-z0-9]{26}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
# The suffix after "dsql" covers endpoint variants (e.g. "dsql-fips").
DSQL_HOST = re.compile(r"(?P<id>[^.]+)\.dsql[^.]*\.(?P<region>[^.]+)\.on\.aws", re.I)
#: How an endpoint's name is spelled, for messages.
ENDPOINT_FORM = "<cluster-id>.dsql.<region>.on.aws"
URL_PREFIXES = ("postgresql://", "postgres://")


def endpoint_host(cluster_id: str, region: str) -> str:
    """Return the endpoint host name of cluster `!cluster_id` in `!region`."""
    return f"{cluster_id}.dsql.{region}.on.aws"
