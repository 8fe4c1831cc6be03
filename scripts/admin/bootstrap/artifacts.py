"""Uploads to the bundle bucket that write only what changed (sha256 in the object's metadata).

The bucket's hardening (encryption, public access block, TLS-only policy, CORS) is owned by
templates/bootstrap.yml; objects are put with SSE-S3 as its policy requires.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from scripts.admin.bootstrap.errors import BootstrapError, error_code

SHA_METADATA = "sha256"
MAX_TEMPLATE_BODY = 51_200  # CloudFormation's limit for an inline TemplateBody, in bytes


def object_url(bucket: str, region: str, key: str) -> str:
    """The https URL CloudFormation and Service Catalog read a template from."""
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def put_if_changed(
    s3: Any,
    bucket: str,
    key: str,
    data: bytes,
    tags: Mapping[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> bool:
    """Upload unless the object already holds these bytes (sha256 in its metadata); True if uploaded."""
    from botocore.exceptions import ClientError

    digest = sha256_hex(data)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        same = head.get("Metadata", {}).get(SHA_METADATA) == digest
    except ClientError as error:
        if error_code(error) not in ("404", "NoSuchKey", "NotFound"):
            raise
        same = False
    tag_set = [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())]
    if same:
        if tag_set:
            existing = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            if sorted(existing, key=lambda t: t["Key"]) != tag_set:
                s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tag_set})
        return False
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "Body": data,
        "Metadata": {SHA_METADATA: digest},
        "ContentType": content_type,
        "ServerSideEncryption": "AES256",
    }
    if tag_set:
        params["Tagging"] = "&".join(f"{t['Key']}={t['Value']}" for t in tag_set)
    s3.put_object(**params)
    return True


def upload_artifacts(
    s3: Any,
    bucket: str,
    prefix: str,
    build_dir: Path,
    manifest: Mapping[str, Mapping[str, Mapping[str, str]]],
    log: Callable[[str], None],
) -> None:
    """Upload every manifest artifact to s3://bucket/prefix/<file>; unchanged ones are skipped."""
    for group in ("lambdas", "seeds"):
        for name, entry in sorted(manifest[group].items()):
            key = f"{prefix}/{entry['file']}"
            data = (build_dir / entry["file"]).read_bytes()
            if sha256_hex(data) != entry["sha256"]:
                raise BootstrapError(f"{entry['file']} does not match build/manifest.json: re-run packaging")
            uploaded = put_if_changed(s3, bucket, key, data, content_type="application/zip")
            log(f"{'uploaded ' if uploaded else 'unchanged'} s3://{bucket}/{key}  ({name})")


def template_argument(s3: Any, bucket: str, region: str, key: str, body: bytes) -> dict[str, str]:
    """Inline small templates; upload big ones and pass their URL (CloudFormation's 51,200-byte limit)."""
    if len(body) <= MAX_TEMPLATE_BODY:
        return {"TemplateBody": body.decode("utf-8")}
    put_if_changed(s3, bucket, key, body, content_type="application/x-yaml")
    return {"TemplateURL": object_url(bucket, region, key)}


# --- the run -----------------------------------------------------------------------------------------
