"""The bytes of Delta's deletion vectors, checked against PROTOCOL.md's own examples and literal
bytes: Z85 (ZeroMQ's test vector, the spec's inline vector and DV file UUID), the
RoaringBitmapArray (magic number, 64-bit buckets, array and bitmap containers) and the DV file
(version byte, big-endian size, CRC-32), each round-tripped and each damage named."""
from __future__ import annotations

import struct
import uuid
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pyspark_theflash.lake import roaring, z85
from pyspark_theflash.lake.deletion_vectors import INLINE_MAX_BYTES, DeletionVector, VectorFileWriter, read_vector, vector_for
from pyspark_theflash.lake.errors import LakeDamagedError

# PROTOCOL.md, "JSON Example 3 — Inline": the row indexes 3, 4, 7, 11, 18, 29 (40 bytes)
SPEC_INLINE = "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L"


def test_z85_matches_zeromq_and_the_delta_spec() -> None:
    assert z85.encode(bytes.fromhex("864FD26FB559F75B")) == "HelloWorld"  # RFC 32's test vector
    assert z85.decode("HelloWorld") == bytes.fromhex("864FD26FB559F75B")
    assert z85.encode(b"\x01\x02\x03") == z85.encode(b"\x01\x02\x03\x00")  # padded with zeros
    assert z85.decode(z85.encode(b"\x01\x02\x03"), 3) == b"\x01\x02\x03"
    # "JSON Example 1": prefix "ab", then the UUID d2c639aa-8816-431a-aaf6-d3fe2512ff61
    dv = DeletionVector("u", "ab^-aqEH.-t@S}K{vb[*k^", 40, 6, 4)
    assert dv.file_name() == "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"
    assert z85.encode_uuid(uuid.UUID("d2c639aa-8816-431a-aaf6-d3fe2512ff61")) == "^-aqEH.-t@S}K{vb[*k^"
    with pytest.raises(ValueError):
        z85.decode("Hell~World")


def test_roaring_bitmap_array_bytes() -> None:
    data = roaring.serialize(np.array([29, 3, 4, 7, 11, 18, 3]))
    # magic (LE), one bucket (uint64 LE), key 0, then the 32-bit bitmap: cookie 12346, one
    # container (key 0, cardinality - 1 = 5), its offset 16, six uint16 values
    assert data == (struct.pack("<IQI", 1681511377, 1, 0) + struct.pack("<II", 12346, 1) + struct.pack("<HH", 0, 5)
                    + struct.pack("<I", 16) + struct.pack("<6H", 3, 4, 7, 11, 18, 29))
    # the spec's inline example holds the same 32-bit bitmap (after its own 12-byte header)
    assert z85.decode(SPEC_INLINE, 40)[12:] == data[16:]
    rows = np.r_[np.arange(0, 70_000, 3), np.arange(65_536, 75_000), [(1 << 32) + 5, (5 << 32) + 65_537]]
    back = roaring.deserialize(roaring.serialize(rows))
    assert np.array_equal(back, np.unique(rows.astype(np.uint64)))
    with pytest.raises(ValueError, match="magic"):
        roaring.deserialize(b"\0" * 12)


@given(st.lists(st.integers(0, 1 << 40), max_size=300), st.lists(st.integers(0, 1 << 40), max_size=60))
@settings(max_examples=300, deadline=None)
def test_a_vector_merged_with_more_rows_is_their_sorted_union(rows: list[int], more: list[int]) -> None:
    # a settled part's vector gains the rows of the handles a round's new parts show
    # (files.deleted_rows_after): one copy with the new rows placed, equal to a sort of both
    before = np.unique(np.array(rows, dtype=np.uint64))
    got = roaring.merged(before, np.array(more, dtype=np.uint64))
    assert np.array_equal(got, np.union1d(before, np.array(more, dtype=np.uint64)))
    assert np.array_equal(roaring.sorted_unique(np.array(rows + more, dtype=np.uint64)),
                          np.unique(np.array(rows + more, dtype=np.uint64)))


def test_vectors_go_inline_when_small_and_to_a_checksummed_file_otherwise(tmp_path: Path) -> None:
    files = VectorFileWriter()
    small = vector_for(np.array([1, 5, 9], np.uint64), files)
    big = vector_for(np.arange(0, 4_000, 2, dtype=np.uint64), files)
    assert vector_for(np.zeros(0, np.uint64), files) is None
    assert small is not None and small.storage == "i" and small.size <= INLINE_MAX_BYTES and small.offset is None
    assert big is not None and big.storage == "u" and big.offset == 1 and big.cardinality == 2_000
    path = Path(files.write(tmp_path))
    raw = path.read_bytes()
    assert raw[0] == 1 and struct.unpack_from(">I", raw, 1)[0] == big.size
    assert struct.unpack_from(">I", raw, 5 + big.size)[0] == zlib.crc32(raw[5:5 + big.size])
    assert big.file_name() == path.name
    assert read_vector(tmp_path, small).tolist() == [1, 5, 9]
    assert read_vector(tmp_path, big).tolist() == list(range(0, 4_000, 2))
    damaged = bytearray(raw)
    damaged[30] ^= 0x10
    path.write_bytes(bytes(damaged))
    with pytest.raises(LakeDamagedError, match="CRC-32") as err:
        read_vector(tmp_path, big)
    assert str(path) in str(err.value)
    with pytest.raises(LakeDamagedError, match="cardinality"):
        read_vector(tmp_path, DeletionVector("i", small.path_or_inline, small.size, 4))


def test_hadoop_aws_is_the_version_of_pyspark_s_hadoop_client() -> None:
    # S3A fails at class loading against another Hadoop client: the pin follows pyspark's jars
    from pyspark_theflash.lake.jars import HADOOP_VERSION, S3A_ARTIFACTS, pyspark_hadoop_version

    assert pyspark_hadoop_version() == HADOOP_VERSION
    assert ("org.apache.hadoop", "hadoop-aws", HADOOP_VERSION) in S3A_ARTIFACTS


def test_a_lake_dir_on_local_disk_writes_whole_files_and_never_overwrites_a_created_one(tmp_path: Path) -> None:
    from pyspark_theflash.lake.location import lake_dir

    where = lake_dir(tmp_path / "t")
    assert where.uri == str(tmp_path / "t") and where.local
    assert where.names("_delta_log") == [] and not where.is_dir("_delta_log")
    (where / "_delta_log").create("00000000000000000000.json", b"{}\n")
    with pytest.raises(FileExistsError):
        (where / "_delta_log").create("00000000000000000000.json", b"other")
    assert (tmp_path / "t" / "_delta_log" / "00000000000000000000.json").read_bytes() == b"{}\n"
    where.write("lake/a.parquet", b"1234")
    where.write("lake/a.parquet", b"5678")           # a converted file is the same whoever writes it
    assert where.read_range("lake/a.parquet", 1, 2) == b"67" and where.size("lake/a.parquet") == 4
    assert where.names("lake") == ["a.parquet"] and where.subdirs() == ["_delta_log", "lake"]
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name], "a temporary file was left behind"
    assert where.delete("lake/a.parquet") and not where.delete("lake/a.parquet")
    assert lake_dir(f"file://{tmp_path}/t").path == str(tmp_path / "t")
