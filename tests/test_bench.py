"""`tradehub bench ingest` runs end to end and reports rates with their ratios (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tradehub.bootstrap import VIEW_NAMES


def bench(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "bench", "ingest", "--count", "40",
                             "--rounds", "2", "--clients", "4", *args],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _rates(output: str, store: str) -> dict[str, float]:
    pattern = rf"^{store}\s+(raw single-row INSERT|plain eventsourcing|hub submit \(group\))\s+(\d+)"
    return {m[1]: float(m[2]) for m in re.finditer(pattern, output, re.MULTILINE)}


@pytest.mark.slow
def test_bench_ingest_on_sqlite_reports_raw_and_hub_rates():
    output = bench("--only", "sqlite")
    rates = _rates(output, "sqlite")
    assert set(rates) == {"raw single-row INSERT", "plain eventsourcing", "hub submit (group)"}
    assert all(rate > 0 for rate in rates.values())
    assert re.search(r"hub submit \(group\)\s+\d+ declarations/s\s+[\d.]+% of raw", output)
    for line in (r"vessel calls: raw INSERT\s+\d+ rows/s", r"hub submit, sealed\s+\d+ declarations/s\s+[\d.]+% of raw",
                 r"hub submit, unsealed\s+\d+ declarations/s\s+[\d.]+% of raw",
                 r"cost of sealing people\s+-?[\d.]+% of the unsealed rate"):
        assert re.search(rf"^sqlite\s+{line}$", output, re.MULTILINE), (line, output)


@pytest.mark.postgres
@pytest.mark.slow
def test_bench_ingest_on_postgres_cleans_up_after_itself(postgres_url: str):
    import psycopg

    def scratch() -> set[str]:  # another run's, killed before it could drop its own, may be there already
        with psycopg.connect(postgres_url) as connection:
            return {name for (name,) in connection.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'bench\\_%'")}

    before = scratch()
    output = bench("--only", "postgres", "--database-url", postgres_url)
    assert set(_rates(output, "postgres")) == {
        "raw single-row INSERT", "plain eventsourcing", "hub submit (group)"}
    assert scratch() <= before


@pytest.mark.slow
def test_bench_http_against_a_real_server_reports_rate_ratio_and_latency():
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "bench", "http", "--store", "sqlite",
                             "--count", "60", "--rounds", "2", "--clients", "4"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^raw single-row INSERT\s+\d+ rows/s$", result.stdout, re.MULTILINE)
    assert re.search(r"^API peak \(POST accepted\)\s+\d+ declarations/s\s+[\d.]+% of raw\s+p50 [\d.]+ ms"
                     r"\s+p99 [\d.]+ ms$", result.stdout, re.MULTILINE)
    assert re.search(r"^API at half the peak\s+\d+ declarations/s offered\s+p50", result.stdout, re.MULTILINE)


@pytest.mark.slow
def test_bench_messages_reports_hub_and_raw_lxml_rates():
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "bench", "messages", "--count", "30", "--rounds", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^raw lxml build \+ serialise\s+\d+ messages/s$", result.stdout, re.MULTILINE)
    assert re.search(r"^hub map \+ validate \+ write\s+\d+ messages/s\s+[\d.]+% of raw$", result.stdout, re.MULTILINE)
    assert re.search(r"-> (\d+) messages to customs", result.stdout)


@pytest.mark.postgres
def test_the_e2e_bench_counts_events_as_the_log_grows_without_rescanning_it(postgres_url, postgres_schema, tmp_path):
    import psycopg

    from tradehub.bench.e2e import EventCounter
    from tradehub.bootstrap import Settings, build_declarations

    from . import samples

    app = build_declarations(Settings(data_dir=tmp_path, database_url=postgres_url), schema=postgres_schema)
    try:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            table = f"{postgres_schema}.declarations_events"
            submitted = EventCounter(connection, "originator_version = 1", table=table)
            withdrawn = EventCounter(connection, "topic LIKE %s", ("%Withdrawn",), table=table)
            assert (submitted(), withdrawn()) == (0, 0)
            first = app.submit(samples.goods()).declaration.id
            app.submit(samples.goods(reference="TEST-GOODS-0002"))
            assert (submitted(), withdrawn()) == (2, 0)
            app.withdraw(first, "duplicate shipment")
            assert (submitted(), withdrawn()) == (2, 1)
            assert (submitted(), withdrawn()) == (2, 1)  # counted once
    finally:
        app.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_bench_rebuild_reports_one_and_two_processes_against_raw_reads_of_the_same_log(postgres_url: str):
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "bench", "rebuild", "--declarations", "300",
                             "--database-url", postgres_url], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    events = int(re.search(rf"PostgreSQL, (\d+) events \(300 goods declarations\), {len(VIEW_NAMES)} views",
                           result.stdout)[1])
    assert events > 6 * 300  # submitted, a receipt and a decision per agency, an inspection, the release
    raw = int(re.search(rf"raw read of the event table\s+(\d+) events/s\s+\({events} rows", result.stdout)[1])
    decode = re.search(r"read \+ decode, no views\s+(\d+) events/s\s+([\d.]+)% of raw read", result.stdout)
    one = re.search(r"rebuild, 1 process\s+(\d+) events/s\s+([\d.]+)% of read \+ decode\s+([\d.]+)% of raw read",
                    result.stdout)
    two = re.search(r"rebuild, 2 processes\s+(\d+) events/s\s+([\d.]+)x 1 process\s+([\d.]+)% of raw read",
                    result.stdout)
    assert decode and one and two, result.stdout
    assert float(decode[2]) == pytest.approx(100 * int(decode[1]) / raw, abs=0.1)
    assert float(one[2]) == pytest.approx(100 * int(one[1]) / int(decode[1]), abs=0.1)
    assert float(one[3]) == pytest.approx(100 * int(one[1]) / raw, abs=0.1)
    assert float(two[2]) == pytest.approx(int(two[1]) / int(one[1]), abs=0.01)
    assert float(two[3]) == pytest.approx(100 * int(two[1]) / raw, abs=0.1)


def test_the_e2e_bench_measures_projection_lag_from_when_the_oldest_unapplied_event_appeared():
    from tradehub.bench.e2e import LagSampler

    sampler = LagSampler("unused")
    # (time, head, slowest view's position): event 11 appears between 1.0 and 1.1; the view applies it by 1.5.
    sampler.samples = [(1.0, 10, 10), (1.1, 12, 10), (1.2, 15, 11), (1.5, 15, 15), (1.6, 20, 15)]
    assert sampler.seconds() == pytest.approx([0.0, 0.1, 0.2, 0.0, 0.1])


@pytest.mark.slow
def test_bench_erasure_reports_the_rebuilds_and_the_time_to_erase():
    result = subprocess.run([sys.executable, "-m", "tradehub.cli", "bench", "erasure", "--count", "30", "--only",
                             "sqlite"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^sqlite\s+rebuild before erasure\s+[\d.]+ s\s+\d+ events/s$", result.stdout, re.MULTILINE)
    assert re.search(r"^sqlite\s+erase one declaration\s+[\d.]+ ms median\s+[\d.]+ ms p99\s+\d+ erasures/s$",
                     result.stdout, re.MULTILINE)
    assert re.search(r"^sqlite\s+rebuild after erasure\s+[\d.]+ s\s+\d+ events/s\s+[\d.]+x the rate before$", result.stdout,
                     re.MULTILINE)
