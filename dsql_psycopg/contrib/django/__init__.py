"""Django database backend for Aurora DSQL.

Set ``ENGINE`` to ``"dsql_psycopg.contrib.django"``:

```python
DATABASES = {
    "default": {
        "ENGINE": "dsql_psycopg.contrib.django",
        "HOST": "<cluster-id>.dsql.us-east-1.on.aws",
        "NAME": "postgres",
        "USER": "admin",
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 10}},
    }
}
```

and wrap views that write in `retry_atomic`, which re-runs them whole when
DSQL reports an optimistic-concurrency conflict.
"""

from __future__ import annotations

from .occ import retry_atomic

__all__ = ["retry_atomic"]
