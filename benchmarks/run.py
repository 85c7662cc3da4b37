"""Benchmark dsql_psycopg against plain psycopg and the official connector.

Every scenario runs its contenders interleaved, in one run, against DSQL Local
(started in a child process, so that its relay threads do not compete with
the measured code for the GIL). Prints markdown tables and writes the numbers
as JSON.

    python benchmarks/run.py                 # full run (a few minutes)
    python benchmarks/run.py --quick         # tiny N, for a smoke test
    python benchmarks/run.py --scenarios connect,latency -n 500

Contenders:

- floor: plain psycopg with a token made once beforehand, verify-full, direct
  negotiation where libpq >= 17; in the connect scenario it trusts the OS
  bundle, as AWS's guides tell users to write;
- ours: dsql_psycopg, with its default trust (Amazon's roots for a DSQL name);
- psycopg, our parameters: plain psycopg given exactly the libpq parameters
  ours computes (token and trust file included), so only our code differs;
- official: aurora-dsql-python-connector (when installed), as its users run it.

Both trust files of the connect scenario get DSQL Local's CA appended, or
neither could verify its certificate.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import multiprocessing
import multiprocessing.connection
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_async
import boto3
import psycopg
import psycopg_pool

import dsql_psycopg as dsql
from dsql_local import DsqlLocal
from dsql_psycopg import _auth as auth
from dsql_psycopg import _config as config
from dsql_psycopg import _tls as tls
from dsql_psycopg._connect_plan import ConnectPlan, TryEndpoint
from dsql_psycopg._tls import DIRECT_NEGOTIATION

try:
    import aurora_dsql_psycopg as official
    from dsql_core.connection_properties import ConnectionProperties
    from dsql_core.connection_utils import ConnectionUtilities as OfficialUtils
    from dsql_core.occ_retry import OCCRetryConfig
    from dsql_core.token_manager import TokenManager as OfficialTokens

    OFFICIAL_VERSION: str | None = official.__version__
except ImportError:
    OFFICIAL_VERSION = None

RESULTS_DIR = Path(__file__).parent / "results"
SCENARIOS = (
    "connect",
    "sign",
    "pool",
    "contention",
    "latency",
    "region",
    "otel",
    "async",
)
FAKE_KEY_ID = "AKIADSQLBENCHMARK000"  # DSQL Local checks tokens with this pair


# -- statistics -----------------------------------------------------------------


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median and spread (p10, p90) of `samples`."""
    data = sorted(samples)
    if len(data) == 1:
        return {"median": data[0], "p10": data[0], "p90": data[0], "n": 1}
    deciles = statistics.quantiles(data, n=10, method="inclusive")
    return {
        "median": statistics.median(data),
        "p10": deciles[0],
        "p90": deciles[-1],
        "n": len(data),
    }


def with_ratios(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Summaries, each with its ratio to the floor's.

    `paired_ratio` is the median of per-round ratios (round i of a contender
    against round i of the floor, run next to each other): on a busy machine
    it is steadier than the ratio of medians.
    """
    stats = {name: summary(s) for name, s in samples.items()}
    floor = samples["floor"]
    for name, s in stats.items():
        s["ratio_to_floor"] = s["median"] / stats["floor"]["median"]
        paired = summary([a / b for a, b in zip(samples[name], floor, strict=True)])
        s["paired_ratio"] = paired["median"]
        s["paired_ratio_p10"] = paired["p10"]
        s["paired_ratio_p90"] = paired["p90"]
    return stats


def rotated(items: Sequence[Any], i: int) -> list[Any]:
    """`items` starting at position `i`: each contender leads in turn."""
    k = i % len(items)
    return [*items[k:], *items[:k]]


# -- DSQL Local in a child process --------------------------------------------


def _serve_local(
    pipe: multiprocessing.connection.Connection,
    latency: float,
    peer_region: str | None = None,
) -> None:
    # No admission rate limit: the connect scenarios measure clients, not DSQL.
    with DsqlLocal(
        region="us-east-1",
        strict=False,
        latency=latency,
        connection_rate=None,
        peer_region=peer_region,
    ) as local:
        pipe.send(
            {
                "url": local.url,
                "kwargs": local.connect_kwargs(),
                "host": local.host,
                "region": local.region,
                "multi_region_url": local.multi_region_url if peer_region else None,
                "hosts": {r: local.endpoint(r).host for r in local.regions},
            }
        )
        while True:
            command, value = pipe.recv()
            if command == "stop":
                break
            if command == "latency":
                local.latency = value
            elif command == "fail_region":
                local.fail_region(value)
            elif command == "restore_region":
                local.restore_region(value)
            pipe.send("ok")


@dataclass
class Endpoint:
    """A DSQL Local running in a child process."""

    url: str
    kwargs: dict[str, Any]
    host: str
    region: str
    multi_region_url: str | None
    hosts: dict[str, str]
    _pipe: multiprocessing.connection.Connection = field(repr=False)

    def set_latency(self, seconds: float) -> None:
        self._command("latency", seconds)

    def fail_region(self, region: str) -> None:
        self._command("fail_region", region)

    def restore_region(self, region: str) -> None:
        self._command("restore_region", region)

    def _command(self, name: str, value: Any) -> None:
        self._pipe.send((name, value))
        self._pipe.recv()


@contextlib.contextmanager
def local_endpoint(
    latency: float = 0.0, peer_region: str | None = None
) -> Iterator[Endpoint]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_serve_local, args=(child, latency, peer_region), daemon=True
    )
    proc.start()
    try:
        if not parent.poll(120):
            raise RuntimeError("DSQL Local did not start within 120 s")
        info = parent.recv()
        yield Endpoint(_pipe=parent, **info)
    finally:
        with contextlib.suppress(OSError, EOFError):
            parent.send(("stop", None))
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


# -- contenders ---------------------------------------------------------------


def premade_token(ep: Endpoint) -> str:
    client = boto3.Session().client("dsql", region_name=ep.region)
    token: str = client.generate_db_connect_admin_auth_token(ep.host, ep.region, 3600)
    return token


def floor_kwargs(ep: Endpoint, token: str, negotiation: str | None) -> dict[str, Any]:
    """Plain psycopg: the same TLS settings as ours, the token made beforehand."""
    kwargs = dict(ep.kwargs, password=token, sslmode="verify-full")
    if negotiation is not None:
        kwargs["sslnegotiation"] = negotiation
    return kwargs


DEFAULT_NEGOTIATION = "direct" if DIRECT_NEGOTIATION else None


def first_query(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT 1").fetchone()
    conn.close()


SAME_PARAMS = "psycopg, our parameters"


@dataclass
class TrustFiles:
    """The two trust files of the connect scenario, each plus DSQL Local's CA."""

    os_bundle: str  # what the floor trusts: the OS bundle
    amazon: str  # what ours trusts by default: Amazon's roots
    os_roots: int
    amazon_roots: int


@contextlib.contextmanager
def trust_files(ep: Endpoint) -> Iterator[TrustFiles]:
    """Write both trust files; ours uses its own through its default path."""
    ca = Path(ep.kwargs["sslrootcert"]).read_bytes()
    with tempfile.TemporaryDirectory(prefix="dsql-bench-trust-") as tmp:
        os_file = Path(tmp) / "os-bundle-plus-local-ca.pem"
        os_file.write_bytes(Path(tls._system_trust().path).read_bytes() + ca)
        amazon_file = Path(tmp) / "amazon-roots-plus-local-ca.pem"
        amazon_file.write_bytes(Path(tls.AMAZON_ROOTS).read_bytes() + ca)
        shipped = tls.AMAZON_ROOTS
        # The file a DSQL name trusts when none is given, with DSQL Local's CA
        # added: ours still takes its default path, it just finds this file.
        tls.AMAZON_ROOTS = str(amazon_file)
        try:
            yield TrustFiles(
                str(os_file),
                str(amazon_file),
                tls.count_roots(str(os_file)),
                tls.count_roots(str(amazon_file)),
            )
        finally:
            tls.AMAZON_ROOTS = shipped


def contenders_connect(
    ep: Endpoint,
    official_on: bool,
    trust: TrustFiles,
    negotiation: str | None = DEFAULT_NEGOTIATION,
) -> dict[str, Callable[[], None]]:
    token = premade_token(ep)
    floor = floor_kwargs(ep, token, negotiation) | {"sslrootcert": trust.os_bundle}
    ours = {k: v for k, v in ep.kwargs.items() if k != "sslrootcert"}
    same = dsql.DsqlConnection._get_connection_params("", **ours)
    assert same["sslrootcert"] == trust.amazon
    found: dict[str, Callable[[], None]] = {
        "floor": lambda: first_query(psycopg.connect(**floor)),
        "ours": lambda: first_query(dsql.connect(**ours)),
        SAME_PARAMS: lambda: first_query(psycopg.connect(**same)),
    }
    if official_on:
        # As its users run it: no sslmode (libpq's "prefer": TLS through
        # SSLRequest, certificate not checked) and no sslrootcert.
        url = ep.url.split("&sslrootcert=")[0]
        found["official"] = lambda: first_query(official.connect(url))
    return found


def time_calls(
    contenders: dict[str, Callable[[], None]],
    n: int,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """Wall seconds of `n` interleaved calls of each contender.

    With `cpu`, also collect the process's CPU seconds per call: what the
    client itself spent (Python, libpq, TLS; DSQL Local runs in another
    process), which other processes on a busy machine disturb far less than
    the wall clock.
    """
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for i in range(n):
        for name in rotated(names, i):
            cpu_started = time.process_time()
            started = time.perf_counter()
            contenders[name]()
            samples[name].append(time.perf_counter() - started)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - cpu_started)
    return samples


# -- scenario 1: connect + first query ------------------------------------------


def bench_connect(ep: Endpoint, n: int, official_on: bool) -> dict[str, Any]:
    with trust_files(ep) as trust:
        contenders = contenders_connect(ep, official_on, trust)
        for call in contenders.values():  # warm up: imports, client caches
            call()
        cpu: dict[str, list[float]] = {}
        stats = with_ratios(time_calls(contenders, n, cpu))
    result: dict[str, Any] = {
        "n": n,
        "trust_roots": {"floor": trust.os_roots, "ours": trust.amazon_roots},
        "seconds": stats,
        "client_cpu_seconds": with_ratios(cpu),
        # Only our code differs between these two: our cost per connect.
        "our_cost_cpu_seconds": summary(
            [
                a - b
                for a, b in zip(
                    cpu["ours"], cpu["psycopg, our parameters"], strict=True
                )
            ]
        ),
    }
    if "official" in stats:
        result["official_over_ours"] = (
            stats["official"]["median"] / stats["ours"]["median"]
        )
    return result


# -- scenario 2: token signing ------------------------------------------------


def bench_sign(ep: Endpoint, n: int, official_on: bool) -> dict[str, Any]:
    params = config.parse(**ep.kwargs)
    same = dsql.DsqlConnection._get_connection_params("", **ep.kwargs)
    client = boto3.Session().client("dsql", region_name=ep.region)
    calls: dict[str, Callable[[], None]] = {
        # botocore with a reused client: the least any signer can cost
        "botocore, reused client": lambda: (
            client.generate_db_connect_admin_auth_token(ep.host, ep.region, 900),
            None,
        )[1],
        "ours: sign": lambda: (auth.make_token(params), None)[1],
        "ours: all per-connect work": lambda: (our_connect_work(ep.kwargs), None)[1],
        # What psycopg itself does in that step (it parses the parameters
        # through libpq), which ours replaces: the difference is our own cost.
        "psycopg: its own parameter step, our parameters": lambda: (
            psycopg.Connection._get_connection_params("", **same),
            None,
        )[1],
    }
    official_n = max(2, n // 40)
    if official_on:
        official_params, _ = _official_parse(ep)
        calls["official: sign"] = lambda: (
            OfficialTokens.get_token(official_params),
            None,
        )[1]
        calls["official: all per-connect work"] = lambda: (
            OfficialUtils.parse_properties_and_set_token(ep.url, {}, "psycopg"),
            None,
        )[1]
    for call in calls.values():
        call()
    fast = {k: v for k, v in calls.items() if not k.startswith("official")}
    slow = {k: v for k, v in calls.items() if k.startswith("official")}
    samples = time_calls(fast, n)
    if slow:
        samples.update(time_calls(slow, official_n))
    stats = {name: summary([x * 1e6 for x in s]) for name, s in samples.items()}
    return {"n": n, "official_n": official_n if slow else 0, "microseconds": stats}


def our_connect_work(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Do what `DsqlConnection.connect` does before libpq opens a socket."""
    endpoints = config.parse_endpoints(**kwargs)
    plan = ConnectPlan(endpoints, conninfo="", kwargs=kwargs, started=time.monotonic())
    step = plan.next_step(time.monotonic())
    assert isinstance(step, TryEndpoint)
    return dsql.DsqlConnection._get_connection_params("", _dsql_params=step.params)


def _official_parse(ep: Endpoint) -> tuple[dict[str, Any], dict[str, Any]]:
    return ConnectionProperties.parse_properties(ep.url, {})


# -- scenario 3: pool throughput ------------------------------------------------


def _pool_round(
    pool: psycopg_pool.ConnectionPool[Any], threads: int, ops: int
) -> float:
    barrier = threading.Barrier(threads + 1)

    def worker() -> None:
        barrier.wait()
        for _ in range(ops):
            with pool.connection() as conn:
                conn.execute("SELECT 1").fetchone()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return threads * ops / (time.perf_counter() - started)


def bench_pool(
    ep: Endpoint, rounds: int, threads: int, ops: int, official_on: bool
) -> dict[str, Any]:
    token = premade_token(ep)
    size = {"min_size": threads, "max_size": threads, "open": True}
    with contextlib.ExitStack() as stack:
        pools: dict[str, psycopg_pool.ConnectionPool[Any]] = {
            "floor": stack.enter_context(
                psycopg_pool.ConnectionPool(
                    kwargs=floor_kwargs(ep, token, DEFAULT_NEGOTIATION), **size
                )
            ),
            "ours": stack.enter_context(dsql.create_pool(ep.url, **size)),
        }
        if official_on:
            pools["official"] = stack.enter_context(
                official.create_pool(ep.url, **size)
            )
        for pool in pools.values():
            pool.wait(30)
            _pool_round(pool, threads, 5)
        samples: dict[str, list[float]] = {name: [] for name in pools}
        checkout: dict[str, list[float]] = {name: [] for name in pools}
        for i in range(rounds):
            for name in rotated(list(pools), i):
                samples[name].append(_pool_round(pools[name], threads, ops))
                checkout[name].append(_checkout_cost(pools[name], ops))
    return {
        "rounds": rounds,
        "threads": threads,
        "ops_per_thread": ops,
        "ops_per_s": with_ratios(samples),
        "checkout_microseconds": {
            name: summary([x * 1e6 for x in s]) for name, s in checkout.items()
        },
    }


def _checkout_cost(pool: psycopg_pool.ConnectionPool[Any], n: int) -> float:
    """Seconds per checkout and return, no query: the pool's own overhead."""
    started = time.perf_counter()
    for _ in range(n):
        with pool.connection():
            pass
    return (time.perf_counter() - started) / n


# -- scenario 4: hot-row contention -----------------------------------------------

COUNTER_TABLE = "bench_counter"


def increment(conn: psycopg.Connection[Any]) -> None:
    """Read the counter, then write it back plus one: a lost update if unguarded."""
    row = conn.execute(f"SELECT value FROM {COUNTER_TABLE} WHERE id = 1").fetchone()
    assert row is not None
    conn.execute(f"UPDATE {COUNTER_TABLE} SET value = %s WHERE id = 1", (row[0] + 1,))


class Tally:
    """Body runs and commits of one writer thread."""

    def __init__(self) -> None:
        self.runs = 0
        self.commits = 0
        self.failures = 0

    def body(self, conn: psycopg.Connection[Any]) -> None:
        self.runs += 1
        increment(conn)


Runner = Callable[[Tally], None]  # one transaction, retried as the policy says


def ours_runner(pool: psycopg_pool.ConnectionPool[Any], **policy: Any) -> Runner:
    def run(tally: Tally) -> None:
        dsql.transaction(pool, **policy).run(tally.body)

    return run


def decorrelated_runner(
    pool: psycopg_pool.ConnectionPool[Any], attempts: int, base: float, cap: float
) -> Runner:
    """Decorrelated jitter: sleep = min(cap, uniform(base, 3 * previous sleep)).

    Built on our single-attempt ``with transaction(pool)`` (the policy object
    has no decorrelated mode).
    """

    def run(tally: Tally) -> None:
        sleep = base
        for attempt in range(1, attempts + 1):
            try:
                with dsql.transaction(pool) as conn:
                    tally.body(conn)
                return
            except psycopg.Error as ex:
                if not dsql.is_occ_error(ex) or attempt == attempts:
                    raise
            sleep = min(cap, random.uniform(base, sleep * 3))
            time.sleep(sleep)

    return run


def official_runner(pool: Any) -> Runner:
    def run(tally: Tally) -> None:
        pool.run_transaction(tally.body, retry=OCCRetryConfig())

    return run


@dataclass
class Policy:
    name: str
    make: Callable[[psycopg_pool.ConnectionPool[Any], Any], Runner]
    official: bool = False


POLICIES = (
    Policy("ours default", lambda p, _: ours_runner(p)),
    # The default until the chaos suite showed it running out right after an
    # outage: a bare count of attempts, no time budget.
    Policy(
        "former default: 20 att., 5 ms-0.25 s, no time limit",
        lambda p, _: ours_runner(p, max_attempts=20, timeout=None),
    ),
    # The article's Rust defaults: 3 attempts, 100 ms doubling to 5 s, plus
    # 0-25 % jitter. Our jitter takes off up to `jitter` of a cap, so
    # 125 ms x (1 - 0.2 r) is exactly 100 ms x (1 + 0.25 r).
    Policy(
        "article: 3 att., 100 ms-5 s, +25 %",
        lambda p, _: ours_runner(
            p, max_attempts=3, base_delay=0.125, max_delay=6.25, jitter=0.2
        ),
    ),
    Policy(
        "official defaults: 4 att., 1-100 ms, +25 %",
        lambda _, o: official_runner(o),
        official=True,
    ),
    # The schedule of AWS's Go, .NET and JDBC connectors, with full jitter.
    Policy(
        "full jitter: 10 att., 100 ms-5 s",
        lambda p, _: ours_runner(
            p, max_attempts=10, base_delay=0.1, max_delay=5.0, jitter=1.0
        ),
    ),
    Policy(
        "full jitter: 20 att., 10 ms-0.5 s",
        lambda p, _: ours_runner(
            p, max_attempts=20, base_delay=0.01, max_delay=0.5, jitter=1.0
        ),
    ),
    Policy(
        # The defaults before this benchmark chose the current ones.
        "full jitter: 10 att., 20 ms-1 s",
        lambda p, _: ours_runner(
            p, max_attempts=10, base_delay=0.02, max_delay=1.0, jitter=1.0
        ),
    ),
    Policy(
        "decorrelated: 20 att., 5 ms-0.25 s",
        lambda p, _: decorrelated_runner(p, 20, 0.005, 0.25),
    ),
)


def _contention_round(
    pool: psycopg_pool.ConnectionPool[Any], runner: Runner, writers: int, each: int
) -> dict[str, float]:
    with pool.connection() as conn:
        conn.execute(f"UPDATE {COUNTER_TABLE} SET value = 0 WHERE id = 1")
    tallies = [Tally() for _ in range(writers)]
    barrier = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def writer(tally: Tally) -> None:
        barrier.wait()
        for _ in range(each):
            try:
                runner(tally)
                tally.commits += 1
            except Exception as ex:
                if not dsql.is_occ_error(ex):
                    errors.append(ex)
                    return
                tally.failures += 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in tallies]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"a writer failed with a non-conflict error: {errors[0]!r}")
    with pool.connection() as conn:
        row = conn.execute(f"SELECT value FROM {COUNTER_TABLE} WHERE id = 1").fetchone()
    assert row is not None
    commits = sum(t.commits for t in tallies)
    return {
        "commits": commits,
        "failures": sum(t.failures for t in tallies),
        "runs": sum(t.runs for t in tallies),
        "wall": wall,
        "final_value_ok": float(row[0] == commits),
    }


def bench_contention(
    ep: Endpoint,
    writer_counts: Sequence[int],
    each: int,
    reps: int,
    latency: float,
    official_on: bool,
) -> dict[str, Any]:
    ep.set_latency(latency)
    with dsql.connect(**ep.kwargs, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {COUNTER_TABLE}"
            " (id int PRIMARY KEY, value int NOT NULL)"
        )
    with dsql.connect(**ep.kwargs, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {COUNTER_TABLE} VALUES (1, 0) ON CONFLICT (id) DO NOTHING"
        )
    policies = [p for p in POLICIES if official_on or not p.official]
    results: dict[str, dict[str, Any]] = {}
    for k in writer_counts:
        size = {"min_size": k, "max_size": k, "open": True}
        with contextlib.ExitStack() as stack:
            ours = stack.enter_context(dsql.create_pool(ep.url, **size))
            theirs = (
                stack.enter_context(official.create_pool(ep.url, **size))
                if official_on
                else None
            )
            runners = {p.name: p.make(ours, theirs) for p in policies}
            rounds: dict[str, list[dict[str, float]]] = {p.name: [] for p in policies}
            for i in range(reps):
                for p in rotated(policies, i):
                    pool = theirs if p.official else ours
                    assert pool is not None
                    rounds[p.name].append(
                        _contention_round(pool, runners[p.name], k, each)
                    )
        for name, rs in rounds.items():
            commits = sum(r["commits"] for r in rs)
            runs = sum(r["runs"] for r in rs)
            total = k * each * len(rs)
            results.setdefault(name, {})[str(k)] = {
                "success_rate": commits / total,
                "attempts_per_commit": runs / commits if commits else None,
                "wall_seconds": summary([r["wall"] for r in rs]),
                "no_lost_updates": all(r["final_value_ok"] for r in rs),
                "transactions": total,
            }
    ep.set_latency(0.0)
    return {
        "writers": list(writer_counts),
        "transactions_per_writer": each,
        "repetitions": reps,
        "latency_per_round_trip": latency,
        "policies": results,
    }


# -- scenario 5: time to first query under distance ------------------------------------


def bench_latency(
    ep: Endpoint, n: int, latency: float, official_on: bool
) -> dict[str, Any]:
    token = premade_token(ep)
    classic = floor_kwargs(ep, token, "postgres")
    contenders: dict[str, Callable[[], None]] = {
        "floor (classic negotiation)": lambda: first_query(psycopg.connect(**classic)),
        "ours": lambda: first_query(dsql.connect(**ep.kwargs)),
    }
    if DEFAULT_NEGOTIATION is not None:
        direct = floor_kwargs(ep, token, "direct")
        contenders["floor (direct negotiation)"] = lambda: first_query(
            psycopg.connect(**direct)
        )
    if official_on:
        contenders["official"] = lambda: first_query(official.connect(ep.url))
    for call in contenders.values():
        call()
    # The same calls with no added latency and with it: the difference,
    # divided by the latency, counts the round trips each one makes.
    ep.set_latency(0.0)
    near = time_calls(contenders, n)
    ep.set_latency(latency)
    far = time_calls(contenders, n)
    ep.set_latency(0.0)
    stats: dict[str, dict[str, Any]] = {}
    for name in contenders:
        s = summary(far[name])
        # Low deciles: the calls least disturbed by the rest of the machine.
        s["round_trips"] = (s["p10"] - summary(near[name])["p10"]) / latency
        stats[name] = s
    base = stats["floor (classic negotiation)"]
    for s in stats.values():
        s["round_trips_saved_vs_classic"] = base["round_trips"] - s["round_trips"]
        s["ratio_to_classic_floor"] = s["median"] / base["median"]
    return {"n": n, "latency_per_round_trip": latency, "seconds": stats}


# -- scenario 6: a Region failing and recovering ------------------------------------

REGION_TABLE = "bench_region_ledger"
PEER_REGION = "us-west-2"


def bench_region(
    ep: Endpoint, writers: int, before: float, outage: float, after: float
) -> dict[str, Any]:
    """Writers commit through a pool over both endpoints while the first fails.

    Each commit is recorded with its time and the Region it went to; the
    timeline is binned per 100 ms. The pool's ``endpoint_cooldown`` is 1 s
    (30 by default), so that traffic returns within the run.
    """
    assert ep.multi_region_url is not None
    with dsql.connect(ep.multi_region_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {REGION_TABLE} (id uuid PRIMARY KEY)")
    region_of = {host: region for region, host in ep.hosts.items()}
    lock = threading.Lock()
    commits: list[tuple[float, str]] = []
    failures: dict[str, int] = {}
    stop = threading.Event()

    def body(conn: dsql.DsqlConnection[Any], entry: Any) -> str:
        conn.execute(f"INSERT INTO {REGION_TABLE} VALUES (%s)", (entry,))
        return conn.endpoint

    with dsql.create_pool(
        ep.multi_region_url,
        min_size=writers,
        max_size=writers,
        endpoint_cooldown=1.0,
        timeout=60,
    ) as pool:
        pool.wait(60)
        started = time.monotonic()

        def writer() -> None:
            import uuid  # noqa: PLC0415

            while not stop.is_set():
                try:
                    endpoint = dsql.run_transaction(pool, body, uuid.uuid4())
                except Exception as ex:  # counted, and the writer goes on
                    with lock:
                        name = type(ex).__name__
                        failures[name] = failures.get(name, 0) + 1
                    continue
                with lock:
                    commits.append((time.monotonic() - started, region_of[endpoint]))

        threads = [threading.Thread(target=writer) for _ in range(writers)]
        for t in threads:
            t.start()
        time.sleep(before)
        failed_at = time.monotonic() - started
        ep.fail_region(ep.region)
        time.sleep(outage)
        ep.restore_region(ep.region)
        restored_at = time.monotonic() - started
        time.sleep(after)
        stop.set()
        for t in threads:
            t.join()
    end = before + outage + after
    width = 0.1
    bins = int(end / width) + 1
    per_region = {region: [0] * bins for region in ep.hosts}
    for at, region in commits:
        per_region[region][min(bins - 1, int(at / width))] += 1
    home = [at for at, r in commits if r == ep.region]
    peer = [at for at, r in commits if r != ep.region]
    return {
        "writers": writers,
        "bin_seconds": width,
        "failed_at": failed_at,
        "restored_at": restored_at,
        "endpoint_cooldown": 1.0,
        "home_region": ep.region,
        "commits_per_bin": per_region,
        "commits": len(commits),
        "failures": failures,
        "first_on_peer_after_failure": min(
            (at - failed_at for at in peer if at > failed_at), default=None
        ),
        "first_home_after_recovery": min(
            (at - restored_at for at in home if at > restored_at), default=None
        ),
    }


# -- scenario 7: what OpenTelemetry costs ---------------------------------------------

OTEL_MODES = ("API absent", "API, no SDK", "SDK on")
OTEL_OPERATIONS = ("connect", "transaction", "hooks")
HOOK_ROUNDS = 100
OTEL_TABLE = "bench_otel"


class _BlockOpenTelemetry:
    """A sys.meta_path finder that makes ``import opentelemetry`` fail."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"{name} blocked: the 'API absent' contender")


def _otel_worker(
    pipe: multiprocessing.connection.Connection, mode: str, kwargs: dict[str, Any]
) -> None:
    """Run connects and retried transactions on request, in one telemetry mode."""
    exporter = None
    if mode == "API absent":
        sys.meta_path.insert(0, _BlockOpenTelemetry())  # type: ignore[arg-type]
    elif mode == "SDK on":
        from opentelemetry import metrics, trace  # noqa: PLC0415
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
            InMemoryMetricReader,
        )
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
            SimpleSpanProcessor,
        )
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: PLC0415
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(
            MeterProvider(metric_readers=[InMemoryMetricReader()])
        )
    other = dsql.connect(**kwargs, autocommit=True)
    conn = dsql.connect(**kwargs)

    def connect_once() -> None:
        first_query(dsql.connect(**kwargs))

    def retried_once() -> None:
        # Attempt 1 reads the row, another session updates it and commits,
        # attempt 1's COMMIT fails with OC000; attempt 2 commits.
        for attempt in dsql.transaction(conn):
            with attempt as c:
                c.execute(f"SELECT n FROM {OTEL_TABLE} WHERE id = 1").fetchone()
                if attempt.number == 1:
                    other.execute(f"UPDATE {OTEL_TABLE} SET n = n + 1 WHERE id = 1")
                c.execute(f"UPDATE {OTEL_TABLE} SET n = n + 1 WHERE id = 1")

    from dsql_psycopg import _telemetry as telemetry  # noqa: PLC0415

    params = config.parse(**kwargs)
    conflict = psycopg.errors.SerializationFailure("conflict (OC000)")

    def hooks_once() -> None:
        # The hooks a connect and a once-retried transaction call, no I/O:
        # 100 rounds per call, so that one sample is well above the clock's
        # resolution (divided by 100 below).
        for _ in range(HOOK_ROUNDS):
            trace = telemetry.connect_started()
            telemetry.token_signed(1e-4)
            trace.connected(params, failover=False)
            tx = telemetry.transaction_started(10, False)
            for number, error in ((1, conflict), (2, None)):
                tx.attempt_started(number)
                tx.deactivate(tx.activate())
                tx.attempt_ended(error, "conflict" if error else None)
                if error is not None:
                    tx.retrying("conflict", 0.01)
            tx.finished()

    calls = {
        "connect": connect_once,
        "transaction": retried_once,
        "hooks": hooks_once,
    }
    dsql.retry_testing()  # the backoff is computed but not slept
    for call in calls.values():
        call()
    pipe.send("ready")
    while True:
        command, count = pipe.recv()
        if command == "stop":
            break
        if command == "check":
            spans = len(exporter.get_finished_spans()) if exporter else 0
            pipe.send(
                {
                    "opentelemetry_imported": "opentelemetry" in sys.modules,
                    "telemetry_enabled": dsql.telemetry_enabled(),
                    "spans_last_batch": spans,
                }
            )
            continue
        if exporter is not None:
            exporter.clear()
        wall, cpu = [], []
        per = HOOK_ROUNDS if command == "hooks" else 1
        for _ in range(count):
            cpu_started = time.process_time()
            started = time.perf_counter()
            calls[command]()
            wall.append((time.perf_counter() - started) / per)
            cpu.append((time.process_time() - cpu_started) / per)
        pipe.send((wall, cpu))
    conn.close()
    other.close()


def bench_otel(ep: Endpoint, rounds: int, batch: int) -> dict[str, Any]:
    """Connect and a once-retried transaction in each telemetry mode, interleaved.

    Each mode runs in its own process (the API cannot be un-imported); the
    processes take turns, `batch` calls at a time, for `rounds` rounds.
    """
    with dsql.connect(**ep.kwargs, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {OTEL_TABLE} (id int PRIMARY KEY, n int)"
        )
        conn.execute(f"INSERT INTO {OTEL_TABLE} VALUES (1, 0) ON CONFLICT DO NOTHING")
    ctx = multiprocessing.get_context("spawn")
    workers = {}
    try:
        for mode in OTEL_MODES:
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_otel_worker, args=(child, mode, ep.kwargs), daemon=True
            )
            proc.start()
            workers[mode] = (proc, parent)
        for mode, (_, pipe) in workers.items():
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise RuntimeError(f"the {mode!r} worker did not start")
        result: dict[str, Any] = {"rounds": rounds, "batch": batch, "checks": {}}
        for op in OTEL_OPERATIONS:
            wall: dict[str, list[float]] = {m: [] for m in OTEL_MODES}
            cpu: dict[str, list[float]] = {m: [] for m in OTEL_MODES}
            for i in range(rounds):
                for mode in rotated(OTEL_MODES, i):
                    pipe = workers[mode][1]
                    pipe.send((op, batch))
                    w, c = pipe.recv()
                    wall[mode] += w
                    cpu[mode] += c
            result[op] = {
                "wall_seconds": _relative(wall, "API absent"),
                "client_cpu_seconds": _relative(cpu, "API absent"),
            }
            for mode, (_, pipe) in workers.items():
                pipe.send(("check", 0))
                result["checks"].setdefault(mode, {})[op] = pipe.recv()
    finally:
        for proc, pipe in workers.values():
            with contextlib.suppress(OSError, EOFError):
                pipe.send(("stop", 0))
            proc.join(30)
    return result


def _relative(samples: dict[str, list[float]], base: str) -> dict[str, Any]:
    stats = {name: summary(s) for name, s in samples.items()}
    for s in stats.values():
        s["ratio_to_absent"] = s["median"] / stats[base]["median"]
        s["extra_us"] = (s["median"] - stats[base]["median"]) * 1e6
    return stats


# -- scenario 8: asyncio beside blocking (benchmarks/bench_async.py) ------------------


def bench_async_scenario(
    ep: Endpoint,
    args: argparse.Namespace,
    quick: bool,
    n: int,
    each: int,
    official_on: bool,
) -> dict[str, Any]:
    """Async vs sync (connect, signing, hot-row writers at K = 8 and 32)."""
    writer_counts = [int(k) for k in args.async_writers.split(",")]
    ep.set_latency(args.contention_latency)
    try:
        contention = bench_async.bench_contention(
            ep.url,
            ep.kwargs,
            [2] if quick else writer_counts,
            each,
            1 if quick else args.repetitions,
            official_on,
            summary,
        )
    finally:
        ep.set_latency(0.0)
    return {
        "connect": bench_async.bench_connect(
            ep.kwargs, ep.url, n, official_on, summary
        ),
        "signing": bench_async.bench_signing(ep.kwargs, 20 if quick else 2000, summary),
        "contention": contention,
        "latency_per_round_trip_in_contention": args.contention_latency,
    }


# -- report ---------------------------------------------------------------------------


def _ms(s: dict[str, float]) -> str:
    return f"{s['median'] * 1e3:.2f} ({s['p10'] * 1e3:.2f}-{s['p90'] * 1e3:.2f})"


def _us(s: dict[str, float]) -> str:
    return f"{s['median'] * 1e6:.1f} µs ({s['p10'] * 1e6:.1f}-{s['p90'] * 1e6:.1f})"


def _ratios(s: dict[str, float]) -> str:
    return (
        f"{s['ratio_to_floor']:.3f} | {s['paired_ratio']:.3f}"
        f" ({s['paired_ratio_p10']:.3f}-{s['paired_ratio_p90']:.3f})"
    )


def render(results: dict[str, Any]) -> str:
    out: list[str] = []
    meta = results["meta"]
    out.append(
        f"dsql-psycopg {meta['dsql_psycopg']}, psycopg {meta['psycopg']} (libpq"
        f" {meta['libpq']}), official connector {meta['official'] or 'not installed'},"
        f" Python {meta['python']}, {meta['cpus']} CPUs"
    )
    for note in meta["notes"]:
        out.append(f"- {note}")
    sc = results["scenarios"]
    if "connect" in sc:
        r = sc["connect"]
        out += [
            "",
            f"### 1. Connect + first query (sequential, N = {r['n']})",
            "",
            f"Trust files: floor the OS bundle ({r['trust_roots']['floor']} roots),"
            f" ours its default, Amazon's roots ({r['trust_roots']['ours']}),"
            " each with DSQL Local's CA appended (counted) so that both verify it.",
            "",
            "| contender | median ms (p10-p90) | ratio of medians"
            " | paired ratio (p10-p90) |",
            "|---|---|---|---|",
        ]
        for name, s in r["seconds"].items():
            out.append(f"| {name} | {_ms(s)} | {_ratios(s)} |")
        out += [
            "",
            "client CPU per connect (the process: Python, libpq, TLS):",
            "",
            "| contender | median ms (p10-p90) | ratio of medians"
            " | paired ratio (p10-p90) |",
            "|---|---|---|---|",
        ]
        for name, s in r["client_cpu_seconds"].items():
            out.append(f"| {name} | {_ms(s)} | {_ratios(s)} |")
        own = r["our_cost_cpu_seconds"]
        out.append(
            "\nour own CPU per connect (ours minus psycopg given our parameters,"
            f" paired): {_ms(own)} ms"
        )
        if "official_over_ours" in r:
            out.append(f"\nofficial / ours = {r['official_over_ours']:.2f}")
    if "sign" in sc:
        r = sc["sign"]
        out += [
            "",
            f"### 2. Token signing (N = {r['n']}; official N = {r['official_n']})",
            "",
            "| call | median µs (p10-p90) |",
            "|---|---|",
        ]
        for name, s in r["microseconds"].items():
            out.append(
                f"| {name} | {s['median']:.1f} ({s['p10']:.1f}-{s['p90']:.1f}) |"
            )
        ours = r["microseconds"]["ours: all per-connect work"]["median"]
        theirs = r["microseconds"]["psycopg: its own parameter step, our parameters"][
            "median"
        ]
        out.append(
            f"\nour own work per connect over psycopg's parameter step (medians):"
            f" {(ours - theirs) / 1000:.3f} ms (goal: at most 0.3 ms)"
        )
    if "pool" in sc:
        r = sc["pool"]
        out += [
            "",
            f"### 3. Pool throughput ({r['threads']} threads x {r['ops_per_thread']}"
            f" checkouts + SELECT 1, {r['rounds']} rounds)",
            "",
            "| pool | median ops/s (p10-p90) | ratio of medians"
            " | paired ratio (p10-p90) |",
            "|---|---|---|---|",
        ]
        for name, s in r["ops_per_s"].items():
            out.append(
                f"| {name} | {s['median']:.0f} ({s['p10']:.0f}-{s['p90']:.0f})"
                f" | {_ratios(s)} |"
            )
        out += ["", "checkout + return alone, one thread, no query (µs):", ""]
        for name, s in r["checkout_microseconds"].items():
            out.append(f"- {name}: {s['median']:.1f} ({s['p10']:.1f}-{s['p90']:.1f})")
    if "contention" in sc:
        r = sc["contention"]
        out += [
            "",
            f"### 4. Hot-row contention (K writers x {r['transactions_per_writer']}"
            f" read-then-increment transactions, {r['repetitions']} repetitions,"
            f" {r['latency_per_round_trip'] * 1e3:g} ms per round trip)",
            "",
            "success rate / attempts per commit / median wall s",
            "",
            "| policy | " + " | ".join(f"K = {k}" for k in r["writers"]) + " |",
            "|---|" + "---|" * len(r["writers"]),
        ]
        for name, per_k in r["policies"].items():
            cells = []
            for k in r["writers"]:
                c = per_k[str(k)]
                apc = c["attempts_per_commit"]
                lost = "" if c["no_lost_updates"] else " LOST UPDATES"
                cells.append(
                    f"{c['success_rate'] * 100:.0f} % / "
                    f"{'-' if apc is None else f'{apc:.2f}'} / "
                    f"{c['wall_seconds']['median']:.2f}{lost}"
                )
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    if "latency" in sc:
        r = sc["latency"]
        out += [
            "",
            f"### 5. Time to first query, {r['latency_per_round_trip'] * 1e3:g} ms"
            f" per round trip (N = {r['n']})",
            "",
            "| contender | median ms (p10-p90) | round trips (from p10)"
            " | saved vs classic floor |",
            "|---|---|---|---|",
        ]
        for name, s in r["seconds"].items():
            out.append(
                f"| {name} | {_ms(s)} | {s['round_trips']:.1f}"
                f" | {s['round_trips_saved_vs_classic']:.1f} |"
            )
    if "region" in sc:
        r = sc["region"]
        first_peer = r["first_on_peer_after_failure"]
        first_home = r["first_home_after_recovery"]
        out += [
            "",
            f"### 6. A Region failing for {r['restored_at'] - r['failed_at']:.1f} s"
            f" ({r['writers']} writers, endpoint_cooldown ="
            f" {r['endpoint_cooldown']:g} s)",
            "",
            f"- commits: {r['commits']}; failures: {r['failures'] or 'none'}",
            "- first commit on the other Region after the failure: "
            + ("-" if first_peer is None else f"{first_peer:.3f} s"),
            f"- first commit on {r['home_region']} after the recovery: "
            + ("-" if first_home is None else f"{first_home:.3f} s"),
        ]
    if "otel" in sc:
        r = sc["otel"]
        out += [
            "",
            f"### 7. OpenTelemetry cost ({r['rounds']} rounds x {r['batch']} calls"
            " per mode, interleaved, one process per mode)",
            "",
            "| operation | mode | median ms (p10-p90) | ratio to absent"
            " | extra µs | client CPU ms (p10-p90) | extra CPU µs |",
            "|---|---|---|---|---|---|---|",
        ]
        for op in OTEL_OPERATIONS:
            # The hooks alone take microseconds: shown in µs, not ms.
            show = _us if op == "hooks" else _ms
            for mode, s in r[op]["wall_seconds"].items():
                c = r[op]["client_cpu_seconds"][mode]
                out.append(
                    f"| {op} | {mode} | {show(s)} | {s['ratio_to_absent']:.3f}"
                    f" | {s['extra_us']:.1f} | {show(c)} | {c['extra_us']:.1f} |"
                )
        out.append(
            "\nhooks: the telemetry calls of one connect and one once-retried"
            " transaction alone, without I/O (per round, from rounds of"
            f" {HOOK_ROUNDS})\n"
        )
        for mode, checks in r["checks"].items():
            out.append(f"- {mode}: {checks}")
    if "async" in sc:
        out += bench_async.render(sc["async"])
    return "\n".join(out)


# -- main ---------------------------------------------------------------------------


def ensure_credentials() -> list[str]:
    notes = []
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    env = os.environ
    if not (env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")):
        os.environ["AWS_ACCESS_KEY_ID"] = FAKE_KEY_ID
        os.environ["AWS_SECRET_ACCESS_KEY"] = "fake-secret-for-dsql-local"
        os.environ.pop("AWS_SESSION_TOKEN", None)
        notes.append("no AWS credentials in the environment: using a fake key pair")
    return notes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny N (smoke test)")
    parser.add_argument("-n", type=int, help="connects per contender (default 200)")
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset"
    )
    parser.add_argument(
        "--writers", help="comma-separated K for contention (default 2,8,16,32)"
    )
    parser.add_argument(
        "--transactions", type=int, help="transactions per writer (default 10)"
    )
    parser.add_argument(
        "--contention-latency",
        type=float,
        default=0.002,
        help="seconds per round trip during contention (default 0.002, in-region)",
    )
    parser.add_argument(
        "--repetitions",
        type=int,
        default=3,
        help="contention runs per policy and K (default 3)",
    )
    parser.add_argument(
        "--async-writers",
        default="8,32",
        help="comma-separated K for the asyncio scenario's writers (default 8,32)",
    )
    parser.add_argument(
        "--no-official", action="store_true", help="leave the official connector out"
    )
    parser.add_argument("--output", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    notes = ensure_credentials()
    quick = args.quick
    n = args.n or (5 if quick else 200)
    writers = (
        [int(k) for k in args.writers.split(",")]
        if args.writers
        else ([2, 4] if quick else [2, 8, 16, 32])
    )
    each = args.transactions or (2 if quick else 10)
    official_on = OFFICIAL_VERSION is not None and not args.no_official
    if OFFICIAL_VERSION is None:
        notes.append(
            "aurora-dsql-python-connector is not installed: official contender skipped"
            " (install the 'bench' dependency group)"
        )
    elif official_on:
        notes.append(
            "official connector run with its defaults: no sslmode (libpq 'prefer':"
            " TLS via SSLRequest, certificate not verified), a new boto3 session per"
            " connect; hostaddr (and, but for the connect scenario, DSQL Local's CA"
            " as sslrootcert) reach libpq through its URL query"
        )
    notes.append(
        "DSQL Local runs in a child process, strict mode off; floor = plain psycopg"
        " with a token made beforehand, verify-full"
        + (", direct negotiation" if DIRECT_NEGOTIATION else "")
    )
    scenarios = [s for s in SCENARIOS if s in args.scenarios.split(",")]
    results: dict[str, Any] = {
        "meta": {
            "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "dsql_psycopg": dsql.__version__,
            "psycopg": psycopg.__version__,
            "libpq": psycopg.pq.version(),
            "official": OFFICIAL_VERSION if official_on else None,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "quick": quick,
            "notes": notes,
        },
        "scenarios": {},
    }
    sc = results["scenarios"]
    with local_endpoint() as ep:
        for name in scenarios:
            if name == "region":  # below, on a two-Region DSQL Local
                continue
            print(f"running {name} ...", file=sys.stderr, flush=True)
            if name == "connect":
                sc[name] = bench_connect(ep, n, official_on)
            elif name == "sign":
                sc[name] = bench_sign(ep, 20 if quick else 2000, official_on)
            elif name == "pool":
                sc[name] = bench_pool(
                    ep,
                    2 if quick else 21,
                    2 if quick else 8,
                    5 if quick else 150,
                    official_on,
                )
            elif name == "contention":
                sc[name] = bench_contention(
                    ep,
                    writers,
                    each,
                    1 if quick else args.repetitions,
                    args.contention_latency,
                    official_on,
                )
            elif name == "latency":
                sc[name] = bench_latency(ep, 3 if quick else 20, 0.02, official_on)
            elif name == "otel":
                sc[name] = bench_otel(ep, 2 if quick else 20, 3 if quick else 10)
            elif name == "async":
                sc[name] = bench_async_scenario(ep, args, quick, n, each, official_on)
        if "region" in scenarios:
            print("running region ...", file=sys.stderr, flush=True)
            with local_endpoint(peer_region=PEER_REGION) as pair:
                sc["region"] = (
                    bench_region(pair, 2, 0.5, 1.0, 1.5)
                    if quick
                    else bench_region(pair, 8, 2.0, 5.0, 4.0)
                )
    results["scenarios"] = {name: sc[name] for name in SCENARIOS if name in sc}
    print(render(results))
    output = args.output or RESULTS_DIR / (
        dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + ".json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
