"""Every benchmark that runs without Spark runs, at a tiny size, to its closing JSON line.

Timing belongs in bench/ and is not asserted here: what is asserted is that a benchmark still
runs against today's code (bench/engines.py had imported a renamed function and did not, with
nothing to notice it) and that its JSON line holds the figures it promises, including the
ratio against its baseline where it names one. The Spark benchmarks (scan, tpch,
writer_decode) are exercised by their own code paths' tests and are too slow for this.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

SMOKE = [
    ("engines.py", ["--rows", "3000", "--keys", "1500", "--batch", "1000", "--repeat", "1"],
     {"rows": 3000, "keys": 1500}, ["ingest_ratio_clickhouse_over_native", "ratio_group_by_after_gc", "delta_rows_per_s"]),
    ("ingest.py", ["--rows", "3000", "--keys", "1500", "--batch", "1000"],
     {"rows": 3000, "same_rows": True}, ["ingest_ratio", "read_ratio_delta_over_theflash"]),
    ("codec.py", ["--rows", "2000", "--repeat", "1"], {"rows": 2000}, ["ratio"]),
    ("binlog.py", ["--events", "2000"], {"events": 2000}, ["append_events_per_s", "grpc_read_events_per_s"]),
    ("writer.py", ["--txns", "200", "--runs", "1", "--ingest-rows", "2000"], {"txns": 200, "runs": 1},
     ["ratio_to_ingest_apply", "ratio_to_ingest_wall"]),
    ("freshness.py", ["--rate", "50", "--seconds", "2"], {"bench": "freshness"}, ["read_your_commit", "passive"]),
    ("load.py", ["--sf", "0.01", "--sample", "200"], {"bench": "load", "sf": 0.01}, ["ratio", "bulk_rows_per_s"]),
    ("flight.py", ["--rows", "20000", "--repeat", "1"], {"bench": "flight", "rows": 20000}, ["ratio", "plain_mb_s"]),
    ("gc_stall.py", ["--seconds", "3", "--gc-every", "1s", "--gc-life", "0s", "--accounts", "50"], {"bench": "gc_stall"},
     ["max_stall_ms", "gc_runs_seen", "GetTS", "ReadIndex", "ScanTable"]),
    ("capture.py", ["--seconds", "2", "--rate", "50", "--probes", "3", "--accounts", "50"], {"bench": "capture"},
     ["ratio", "capture_rows_per_s", "freshness_p99_ms", "plan_p99_ms", "initial_copy_rows_per_s"]),
    ("capture_ceiling.py", ["--txns", "400", "--big-txns", "40", "--copy-rows", "4000", "--latency-seconds", "1",
                            "--latency-rate", "200"], {"bench": "capture_ceiling", "txns": 400},
     ["capture_10row_committed_per_s", "capture_100row_committed_per_s", "writer_alone_committed_per_s",
      "together_committed_per_s", "copy_capture_rows_per_s", "copy_writer_rows_per_s", "latency_p99_ms",
      "store_apply_2pc_rows_per_s", "writer_alone_ratio_to_store"]),
    ("capture_ceiling.py", ["--sweep", "4,64", "--txns", "400", "--resolved-txns", "100"],
     {"bench": "capture_ceiling_sweep", "txns": 400}, ["regions_4", "regions_64", "store_apply_2pc_rows_per_s"]),
    ("capture_idle_memory.py", ["64"], {"bench": "capture_idle_memory", "regions": 64}, ["peak_rss_mib", "seconds"]),
    ("delta_publish.py", ["--rows", "20000", "--rounds", "2", "--rate-txns", "2000", "--rate-runs", "1",
                          "--lag-seconds", "1.5", "--lag-rate", "500", "--publish-interval", "0.5s"],
     {"bench": "delta_publish", "rows": 20000},
     ["first_round_ms", "round_ms_median", "writer_off_committed_per_s", "writer_on_committed_per_s",
      "writer_ratio_on_over_off", "lag_p99_ms", "readable_p99_ms_publication_off", "readable_p99_ms_publication_on"]),
    ("capture_rescan.py", ["--commits", "60", "--rate", "60", "--split-merge", "0.2"],
     {"bench": "capture_rescan", "from_zero_exact": True, "incremental_exact": True},
     ["ratio_snapshot_rows", "ratio_rows", "incremental_snapshot_rows"]),
    ("capture_restarts.py", ["--rows", "20000", "--regions", "4", "--restarts", "2", "--up", "0.2,0.5", "--down", "0.2"],
     {"bench": "capture_restarts", "rows": 20000, "restarts": 2, "replica_equal": True},
     ["copy_bytes", "restart_bytes_median", "restart_ratio_median", "copy_capture_peak_rss_mb", "writer_peak_rss_mb"]),
]


@pytest.mark.parametrize("script, args, echoed, figures", SMOKE, ids=[s[0] for s in SMOKE])
def test_the_benchmark_runs_to_its_json_line(script: str, args: list[str], echoed: dict, figures: list[str],
                                             tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) > 1, "the figures are printed before the JSON line"
    last = json.loads(lines[-1])
    assert {k: last.get(k) for k in echoed} == echoed
    missing = [k for k in figures if k not in last]
    assert not missing, f"{script}'s JSON line lacks {missing}: {sorted(last)}"
    assert all(last[k] is not None for k in figures)
