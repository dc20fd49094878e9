"""Which test modules share a test process's expensive sessions, and the scheduler that keeps them
together under ``pytest -n 3`` (issue 54).

With ``--dist loadfile`` a worker takes the next module when it is free, so the modules that read
through the ``spark`` and ``jvm_spark`` sessions, or through ``delta_spark`` and the S3 server,
land on several workers, and each of them starts those JVMs (and SeaweedFS) and warms them up once:
a Spark JVM spends most of its first minute compiling the code every later query reuses. Run one
after the other in one process, three of the Delta modules took 31 CPU seconds where three
processes took 62 (2026-11-29, quiet machine). So each group below runs whole on one worker,
its modules in collection order, its sessions started and warmed up once a run; the groups are
handed out first, the largest first, so that the other workers fill in around them.

The controller schedules from node ids alone (it imports no test module), so the groups are
named here, by module; ``check_session_groups`` fails a run whose collection has a module that
takes one of these sessions without being in its group (a new module, a moved fixture)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

SPARK_SESSIONS = "spark sessions"  # tests/conftest.py: spark (the Python source) and jvm_spark (the jar)
DELTA_AND_S3 = "delta-spark and S3"  # tests/conftest.py: delta_spark, and the S3 server it reads from

# Each fixture's group: a module that takes any of them (directly or through another fixture)
# belongs to that group.
GROUP_OF_FIXTURE: Mapping[str, str] = {
    "spark": SPARK_SESSIONS,
    "jvm_spark": SPARK_SESSIONS,
    "delta_spark": DELTA_AND_S3,
    "s3_server": DELTA_AND_S3,
}

# Largest first (seconds in a full run, 2026-11-29: about 790 and 300).
GROUPS: tuple[str, ...] = (SPARK_SESSIONS, DELTA_AND_S3)

GROUP_OF_MODULE: Mapping[str, str] = {
    **{f"tests/spark/{name}.py": SPARK_SESSIONS for name in (
        "test_change_feed_options", "test_differential", "test_engine_clickhouse_spark", "test_generated_columns",
        "test_jvm_bank", "test_jvm_changes", "test_jvm_filters", "test_jvm_query_snapshot", "test_jvm_source",
        "test_jvm_token", "test_jvm_truncated_streams", "test_partitioned_tables", "test_read_counts",
        "test_resolved_reads", "test_schema", "test_spark_bank", "test_spark_change_stream", "test_spark_differential",
        "test_spark_filter_scope", "test_spark_read", "test_spark_service", "test_spark_service_read",
        "test_spark_types", "test_table_history", "test_tikv_client", "test_time_travel", "test_tpch")},
    **{f"tests/spark/{name}.py": DELTA_AND_S3 for name in (
        "test_delta_spark", "test_delta_spark_checksums", "test_delta_spark_column_mapping", "test_delta_spark_ddl",
        "test_delta_spark_ddl_s3", "test_delta_spark_generated_columns", "test_delta_spark_s3")},
    **{f"tests/integration/{name}.py": DELTA_AND_S3 for name in (
        "test_delta_s3", "test_delta_s3_commits", "test_store_parts_s3")},
}


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def check_session_groups(items: Iterable[pytest.Item]) -> None:
    """Every collected module that takes a grouped session is in that session's group."""
    wrong: dict[str, str] = {}
    for item in items:
        module = module_of(item.nodeid)
        for fixture in sorted(set(getattr(item, "fixturenames", ())) & GROUP_OF_FIXTURE.keys()):
            if GROUP_OF_MODULE.get(module) != GROUP_OF_FIXTURE[fixture]:
                wrong.setdefault(module, f"{module} takes the {fixture} fixture: add it to the "
                                         f"{GROUP_OF_FIXTURE[fixture]!r} group in tests/support/session_groups.py "
                                         "(GROUP_OF_MODULE), so that one test process starts that session")
    if wrong:
        raise pytest.UsageError("; ".join(wrong.values()))


class SessionGroupScheduling(LoadFileScheduling):
    """``--dist loadfile``, with each group of ``GROUP_OF_MODULE`` one unit of work, handed out
    before any module."""

    def _split_scope(self, nodeid: str) -> str:
        module = module_of(nodeid)
        return GROUP_OF_MODULE.get(module, module)

    def _assign_work_unit(self, node: WorkerController) -> None:
        for group in GROUPS:
            if group in self.workqueue:
                self.workqueue.move_to_end(group, last=False)
                break
        super()._assign_work_unit(node)
