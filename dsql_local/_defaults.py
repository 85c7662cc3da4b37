"""DSQL Local's defaults, shared by the class, the command line and the pytest plugin.

Where DSQL has a figure, the default is DSQL's.
"""

from __future__ import annotations

REGION = "us-east-1"
#: Seconds before DSQL closes a connection.
MAX_CONNECTION_AGE = 3600.0
#: Seconds a token's signing time may be off.
CLOCK_SKEW = 300.0
#: Connections open at once.
MAX_CONNECTIONS = 10_000
#: New connections per second on average, and in one burst.
CONNECTION_RATE = 100.0
CONNECTION_BURST = 1_000
