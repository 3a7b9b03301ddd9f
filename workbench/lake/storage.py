"""Where a lake lives and how each engine reaches it: a local folder or ``s3://BUCKET/PREFIX``.

Credentials and endpoint come from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``) which
deltalake and Polars read themselves; only daft needs them handed over (``daft_io_config``).
Concurrent writers on S3 need conditional writes: ``AWS_CONDITIONAL_PUT=etag`` is set for them
unless the environment says otherwise (AWS S3, MinIO and SeaweedFS support it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError

__all__ = ["daft_io_config", "is_remote", "lake_root", "storage_options", "table_uri"]

_SCHEMES = ("s3://", "s3a://")


def is_remote(lake: str | Path) -> bool:
    return str(lake).startswith(_SCHEMES)


def lake_root(lake: str | Path | None) -> str:
    """The lake's URI as engines want it: ``s3://...`` unchanged (``s3a://`` as ``s3://``), a local folder absolute."""
    if lake is None or not str(lake).strip():
        raise ConfigError("no lake given: pass --lake URI (a folder or s3://BUCKET/PREFIX)")
    text = str(lake).strip()
    if text.startswith("s3a://"):
        text = "s3://" + text[len("s3a://") :]
    if text.startswith("s3://"):
        if len(text) <= len("s3://") or text[len("s3://") :].startswith("/"):
            raise ConfigError(f"lake {lake!r}: expected s3://BUCKET/PREFIX")
        return text.rstrip("/")
    if "://" in text:
        raise ConfigError(f"lake {lake!r}: only local folders and s3://BUCKET/PREFIX are supported")
    return str(Path(text).expanduser().resolve())


def table_uri(lake: str | Path, table: str) -> str:
    """The URI of one Delta table of the lake."""
    root = lake_root(lake)
    return f"{root}/{table}" if is_remote(root) else str(Path(root) / table)


def storage_options(lake: str | Path) -> dict[str, str] | None:
    """deltalake/Polars storage options: None locally; on S3 the environment, with conditional puts on."""
    if not is_remote(lake):
        return None
    options: dict[str, str] = {}
    if "AWS_CONDITIONAL_PUT" not in os.environ:
        options["conditional_put"] = "etag"
    return options


def daft_io_config(lake: str | Path) -> Any:
    """daft's IOConfig for the lake: the AWS environment (daft reads no endpoint variable itself)."""
    from daft.io import IOConfig, S3Config

    if not is_remote(lake):
        return IOConfig()
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return IOConfig(
        s3=S3Config(
            endpoint_url=endpoint,
            key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
            access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
            session_token=os.environ.get("AWS_SESSION_TOKEN"),
            region_name=region,
            use_ssl=not (endpoint or "").startswith("http://"),
        )
    )
