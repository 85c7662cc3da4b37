"""What a running `DsqlLocal` can be made to do: latency, conflicts, faults, outages.

`Controls` is the base class of `DsqlLocal` that holds these methods; each
calls the running endpoint of a region (an `Endpoint`, or a `RemoteEndpoint`
with ``own_process``). Outages and failed regions end on a timer.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ._errors import DsqlLocalError
from ._faults import ConnectRefusal
from ._messages import CONFLICT_MESSAGES
from ._options import check_latency

if TYPE_CHECKING:
    from ._endpoint import Endpoint
    from ._process import RemoteEndpoint
    from ._regional import RegionalEndpoint

logger = logging.getLogger("dsql_local")


class Controls:
    """The controls of `DsqlLocal` (its base class; it sets what is declared)."""

    region: str
    _views: dict[str, RegionalEndpoint]
    """The endpoints by region, own region first, running or not."""
    _endpoints: dict[str, Endpoint | RemoteEndpoint]
    """The running endpoints by region, own region first; empty when stopped."""
    _latencies: dict[str, float]
    _lock: threading.Lock
    _outage_ends: dict[str, threading.Timer]

    def _running(self, region: str | None = None) -> Endpoint | RemoteEndpoint:
        """The endpoint of `region` (None: the own region's), if running."""
        region = self._known(region)
        endpoint = self._endpoints.get(region)
        if endpoint is None:
            raise DsqlLocalError(
                "DSQL Local is not running: call start() or use `with`"
            )
        return endpoint

    def _known(self, region: str | None) -> str:
        if region is None:
            return self.region
        if region not in self._views:
            raise DsqlLocalError(
                f"DSQL Local serves no endpoint in region {region!r}; its"
                f" regions are {', '.join(self._views)}"
            )
        return region

    # -- controls -------------------------------------------------------------

    @property
    def latency(self) -> float:
        """Seconds added to every client round trip (at the own region's endpoint).

        Setting it sets every endpoint's; ``endpoint(region).latency`` sets
        one endpoint's own.
        """
        return self._latencies[self.region]

    @latency.setter
    def latency(self, value: float) -> None:
        for region in self._views:
            self._set_latency(region, value)

    def _set_latency(self, region: str, value: float) -> None:
        check_latency(value)
        self._latencies[region] = value
        endpoint = self._endpoints.get(region)
        if endpoint is not None:
            endpoint.latency = value

    def inject_conflicts(
        self, count: int, code: str = "OC000", *, region: str | None = None
    ) -> None:
        """Make the next `count` COMMITs fail with SQLSTATE 40001.

        The transaction is rolled back and the connection stays usable, as
        in DSQL. `code` is ``"OC000"`` (data conflict) or ``"OC001"`` (schema).
        Replaces any injection not used yet; ``0`` cancels them. Counts the
        COMMITs of one endpoint: `region`'s (by default the own region's).
        """
        if code not in CONFLICT_MESSAGES:
            raise DsqlLocalError(f"code must be one of {sorted(CONFLICT_MESSAGES)}")
        if count < 0:
            raise DsqlLocalError("count must be zero or more")
        self._running(region).inject_conflicts(count, code)

    def inject_commit_drops(self, count: int, *, region: str | None = None) -> None:
        """Lose the connection of each of the next `count` COMMITs after it commits.

        The COMMIT reaches the backend and commits; when the backend confirms
        it, the client connection is closed abruptly instead of relaying the
        confirmation. The client sees a broken connection while COMMIT is in
        flight and cannot tell whether it committed: this is how to test code
        that must cope with an unknown commit outcome (it did commit here).
        Counts only COMMITs of a transaction in progress (not failed), on any
        connection, after injected conflicts and the policy have let them
        through. Replaces any injection not used yet; ``0`` cancels them.
        Counts the COMMITs of `region`'s endpoint (by default the own
        region's).
        """
        if count < 0:
            raise DsqlLocalError("count must be zero or more")
        self._running(region).inject_commit_drops(count)

    def drop_connections(self, *, region: str | None = None) -> None:
        """Close every client connection now, without a message.

        Those of `region`'s endpoint; by default the own region's.
        """
        self._running(region).drop_connections()

    # -- faults ---------------------------------------------------------------

    def refuse_connections(
        self,
        reason: ConnectRefusal = "waking_up",
        *,
        count: int | None = None,
        seconds: float | None = None,
        region: str | None = None,
    ) -> None:
        """Refuse new connections, as DSQL does, for `count` of them or `seconds`.

        Each is answered at startup, before its token is checked, with the
        FATAL error DSQL sends:

        - ``"waking_up"``: ``unable to accept connection, waking up cluster,
          please retry later``, from a cluster that scaled down while idle
          (SQLSTATE 57P03 here; DSQL's own code for it is not documented);
        - ``"rate_exceeded"``: 53400 ``Unable to accept connection, rate
          exceeded.`` (DSQL admits 100 new connections a second, bursts of
          1,000);
        - ``"too_many"``: 53300 ``Unable to accept connection, too many open
          connections.`` (10,000 open connections by default).

        With both `count` and `seconds`, whichever runs out first ends it.
        Replaces the refusal armed before; ``count=0`` cancels it. Refuses
        at `region`'s endpoint; by default the own region's.
        """
        self._running(region).faults.refuse_connections(reason, count, seconds)

    def inject_server_unavailable(
        self,
        statements: int = 0,
        *,
        commits: int = 0,
        commit_fraction: float = 0.0,
        committed: bool | None = False,
        region: str | None = None,
    ) -> None:
        """Fail statements or COMMITs with ``ERROR: server unavailable`` (XX000).

        DSQL answers so when the node serving the connection is lost: the
        transaction is over and must run again, and at COMMIT its outcome is
        unknown. Here, each of the next `statements` statements (not BEGIN,
        COMMIT or ROLLBACK) fails with it and leaves its transaction failed;
        each of the next `commits` COMMITs, and then a random `commit_fraction`
        of all COMMITs, fails with it and ends the transaction. `committed`
        says what such a COMMIT did: ``False`` rolled back, ``True``
        committed, ``None`` either, at random. The connection stays usable.
        Replaces what was armed before; all zeros cancel it. Fails what runs
        through `region`'s endpoint; by default the own region's.
        """
        self._running(region).faults.server_unavailable(
            statements, commits, commit_fraction, committed
        )

    def outage(
        self, seconds: float, *, refuse: bool = True, region: str | None = None
    ) -> None:
        """Take the endpoint away for `seconds`, then bring it back on its port.

        Every connection is cut at once without a message. With `refuse`,
        nothing listens meanwhile, so connecting fails with ``Connection
        refused``; otherwise new connections are accepted and reset at once.
        Returns at once; `end_outage()` ends it early. The data stays.
        With `region`, that region's endpoint; by default the own region's.
        """
        if not seconds > 0:
            raise DsqlLocalError("seconds must be a positive number")
        endpoint = self._running(region)
        region = self._known(region)
        with self._lock:
            self._cancel_outage(region)
            if refuse:
                endpoint.suspend()
            else:
                endpoint.cut(seconds)
            self._end_outage_in(region, seconds)

    def end_outage(self, *, region: str | None = None) -> None:
        """End an outage (or a failed region) now; nothing if there is none.

        With `region`, that region's endpoint; by default the own region's.
        """
        region = self._known(region)
        with self._lock:
            self._cancel_outage(region)
            endpoint = self._endpoints.get(region)
            if endpoint is not None:
                endpoint.cut(0)
                endpoint.resume()

    def _end_outage_in(self, region: str, seconds: float) -> None:
        """Arm the timer that ends `region`'s outage; the caller holds the lock."""
        timer = threading.Timer(seconds, self.end_outage, kwargs={"region": region})
        timer.daemon = True
        self._outage_ends[region] = timer
        timer.start()

    def _cancel_outage(self, region: str) -> None:
        timer = self._outage_ends.pop(region, None)
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def fail_region(self, region: str, seconds: float | None = None) -> None:
        """Take `region`'s endpoint away, as in a regional outage.

        Every connection to it is cut at once without a message, and nothing
        listens on its port (connecting fails with ``Connection refused``)
        until `restore_region()`, or for `seconds` when given (the call
        returns at once; a timer restores it). The other region's endpoint
        keeps serving the same data.
        """
        endpoint = self._running(region)
        if seconds is not None and not seconds > 0:
            raise DsqlLocalError("seconds must be a positive number, or None")
        with self._lock:
            self._cancel_outage(region)
            endpoint.suspend()
            if seconds is not None:
                self._end_outage_in(region, seconds)
        logger.info("DSQL Local failed region %s", region)

    def restore_region(self, region: str) -> None:
        """Listen again on `region`'s port; nothing if it is not failed.

        The data is as the other region left it.
        """
        self._running(region)
        self.end_outage(region=region)
        logger.info("DSQL Local restored region %s", region)

    def kill_endpoint(self) -> None:
        """Make the endpoint vanish, as its process would if killed.

        Every connection is cut without a message and nothing listens on the
        port until `restart_endpoint()`; the backend and its data stay.
        `fail_region()` does the same to any region's endpoint.
        """
        self.fail_region(self.region)

    def restart_endpoint(self) -> None:
        """Listen again on the same port after `kill_endpoint()` or an outage."""
        self.restore_region(self.region)
