"""Print how many recorded cases DSQL Local answers as a real cluster did."""

from __future__ import annotations

import os
import sys

from .harness import replay_on_dsql_local
from .replay import load_known_gaps, summary


def main() -> int:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIACONFORMANCEREPLAY")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "conformance-replay-secret")
    gaps = load_known_gaps()
    results = replay_on_dsql_local()
    sys.stdout.write(summary(results, gaps) + "\n")
    unlisted = [
        r.case_id
        for r in results
        if not r.matches and r.enforced and r.case_id not in gaps
    ]
    return 1 if unlisted else 0


if __name__ == "__main__":
    sys.exit(main())
