"""The generated protobuf modules match protos/ (regenerate with scripts/gen_protos.py)."""
import subprocess
import sys

from conftest import ROOT


def test_generated_protobuf_modules_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_modules_import_as_a_package() -> None:
    from pyspark_theflash.proto import binlog_pb2, upstream_pb2, upstream_pb2_grpc

    event = binlog_pb2.Event(region_id=3, index=9, resolved_ts=42)
    assert binlog_pb2.Event.FromString(event.SerializeToString()).resolved_ts == 42
    assert upstream_pb2.GetTSResponse(ts=7).ts == 7
    assert hasattr(upstream_pb2_grpc, "UpstreamStub")
