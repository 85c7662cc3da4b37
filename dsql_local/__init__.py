"""DSQL Local: an Aurora DSQL look-alike endpoint in front of a private PostgreSQL.

It behaves like DSQL where a client can tell: TLS only (classic and direct
negotiation), IAM token authentication (SigV4, verified with the configured
secrets), optimistic conflicts reported as SQLSTATE 40001 ``(OC000)``, and a
connection age cap. For tests it can inject conflicts, lose connections
(now, or right after a COMMIT has committed), add latency, and reproduce
DSQL's transient failures: connections refused while the cluster wakes up or
past its limits, ``server unavailable`` at a statement or COMMIT, an outage,
and the endpoint going away and coming back. Any client that signs IAM tokens
can connect, plain psycopg with boto3 included:

```python
import boto3
import psycopg

from dsql_local import DsqlLocal

with DsqlLocal() as local:
    signer = boto3.client("dsql", region_name=local.region)
    token = signer.generate_db_connect_admin_auth_token(local.host, local.region)
    with psycopg.connect(
        **local.connect_kwargs(), password=token, sslmode="verify-full"
    ) as conn:
        conn.execute("SELECT 1")
```
"""

from __future__ import annotations

from ._errors import DsqlLocalError
from ._local import DsqlLocal, RegionalEndpoint
from ._policy import Refusal, Session, StatementPolicy

__all__ = [
    "DsqlLocal",
    "DsqlLocalError",
    "Refusal",
    "RegionalEndpoint",
    "Session",
    "StatementPolicy",
]
