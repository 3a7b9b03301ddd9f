"""The S3 server the object-storage tests use is real: engines the team features rely on talk to it.

These pin what workbench's S3 archive and Delta Lake tables assume of the server: conditional
writes refuse to overwrite, checksums are checked, and deltalake, Polars and daft round-trip a
table through it. If SeaweedFS changes, these fail before the feature tests do.
"""

from __future__ import annotations

import os

import polars as pl
import pytest
from botocore.exceptions import ClientError
from seaweedfs import SeaweedFS

pytestmark = pytest.mark.xdist_group("s3")


def test_a_conditional_put_never_overwrites_an_existing_key(seaweedfs: SeaweedFS, bucket: str) -> None:
    client = seaweedfs.client()
    client.put_object(Bucket=bucket, Key="objects/aa/x", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=bucket, Key="objects/aa/x", Body=b"second", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert client.get_object(Bucket=bucket, Key="objects/aa/x")["Body"].read() == b"first"


def test_a_put_whose_checksum_does_not_match_its_bytes_is_refused(seaweedfs: SeaweedFS, bucket: str) -> None:
    client = seaweedfs.client()
    wrong = "A" * 43 + "="
    with pytest.raises(ClientError):
        client.put_object(Bucket=bucket, Key="k", Body=b"payload", ChecksumSHA256=wrong)
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_delta_tables_on_the_server_read_back_in_polars_and_daft(bucket: str) -> None:
    from deltalake import DeltaTable, write_deltalake

    uri = f"s3://{bucket}/lake/t"
    frame = pl.DataFrame({"id": ["a", "b", "c"], "ir": [0.5, 1.5, -0.25]})
    write_deltalake(uri, frame.to_arrow(), mode="append")
    write_deltalake(uri, pl.DataFrame({"id": ["d"], "ir": [2.0]}).to_arrow(), mode="append")
    assert DeltaTable(uri).version() == 1
    read = pl.scan_delta(uri).filter(pl.col("ir") > 0).collect().sort("id")
    assert read["id"].to_list() == ["a", "b", "d"]
    import daft
    from daft.io import IOConfig, S3Config

    io = IOConfig(
        s3=S3Config(
            endpoint_url=os.environ["AWS_ENDPOINT_URL"],
            key_id=os.environ["AWS_ACCESS_KEY_ID"],
            access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region_name=os.environ["AWS_REGION"],
            use_ssl=False,
        )
    )
    total = daft.read_deltalake(uri, io_config=io).agg(daft.col("ir").sum()).to_pydict()["ir"][0]
    assert total == pytest.approx(3.75)
