"""S3-compatible object storage for a registry jindr runs: `s3://BUCKET[/PREFIX]`, the registry's
`storage.s3` section with credentials from boto3's own chain, the bucket, and a clean environment.

The credentials go only into the section this module returns, which the runtime writes to the
0600 config file; the registry's environment gets no AWS_* variable (see `registry_environment`).
boto3 is imported inside the functions that use it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..errors import InvalidReference, RuntimeFailure

__all__ = [
    "BucketStorage",
    "S3Credentials",
    "S3Location",
    "bucket_storage",
    "ensure_bucket",
    "parse_s3_url",
    "registry_environment",
    "resolve_credentials",
    "resolve_region",
    "storage_section",
]

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# Reserved by AWS for its own bucket kinds (access points, directory and table buckets, examples).
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# Credentials an EC2 instance role hands out: the registry's own AWS SDK fetches them from the
# instance metadata itself and renews them; copying them into a config would freeze ones that expire in hours.
_ROLE_METHODS = frozenset({"iam-role"})


@dataclass(frozen=True)
class S3Location:
    """A bucket and the prefix (no leading or trailing '/', maybe empty) the registry keeps its tree under."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def root(self) -> str:
        """Where the registry's `docker/registry/v2/...` tree starts in the bucket ("" or "PREFIX/")."""
        return f"{self.prefix}/" if self.prefix else ""


@dataclass(frozen=True)
class S3Credentials:
    """What boto3's chain found; `method` is botocore's name for where (env, shared-credentials-file, ...)."""

    access_key: str
    secret_key: str = ""
    token: str = ""
    method: str = ""

    def __repr__(self) -> str:  # the secret and the token never reach a repr, a log or a row
        return f"S3Credentials(access_key={self.access_key!r}, method={self.method!r})"


@dataclass(frozen=True)
class BucketStorage:
    """Where a registry jindr runs keeps its tree on object storage, and how jindr itself reaches it.

    The runtimes record it with the registry (no secret in it: boto3's chain is asked again, with
    `profile`, whenever jindr reads or deletes in the bucket); ops read and delete through `client()`.
    """

    location: S3Location
    region: str
    endpoint: str = ""
    profile: str = ""

    @property
    def url(self) -> str:
        return self.location.url

    def client(self) -> Any:
        """A boto3 S3 client for the bucket (path-style when an endpoint is given, as the registry uses it)."""
        from botocore.config import Config

        config = Config(s3={"addressing_style": "path"}) if self.endpoint else None
        return _session(self.profile).client(
            "s3",
            region_name=self.region,
            endpoint_url=_endpoint(self.endpoint) if self.endpoint else None,
            config=config,
        )


def bucket_storage(url: str, *, endpoint: str = "", region: str = "", profile: str = "") -> BucketStorage:
    """`start --storage s3://...` with its flags checked, and the region resolved now (it is recorded)."""
    location = parse_s3_url(url)
    endpoint = _endpoint(endpoint) if endpoint else ""
    return BucketStorage(location, resolve_region(region, profile), endpoint, profile)


def parse_s3_url(text: str) -> S3Location:
    """`s3://BUCKET[/PREFIX]`, with the bucket checked against S3's naming rules."""
    shown = redacted(text)  # a key typed into the URL is never echoed back
    if not text.startswith("s3://"):
        raise InvalidReference(f"invalid --storage {shown!r}: expected a directory or s3://BUCKET[/PREFIX]")
    parts = urlsplit(text)
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise InvalidReference(
            f"invalid --storage {shown!r}: s3://BUCKET[/PREFIX] takes no user, port, '?' or '#' "
            "(the endpoint goes in --s3-endpoint)"
        )
    bucket = parts.netloc
    problem = _bucket_problem(bucket)
    if problem:
        raise InvalidReference(f"invalid bucket name {bucket!r} in {shown!r}: {problem}")
    segments = [s for s in parts.path.split("/") if s]
    if parts.path.strip("/") and len(segments) != len(parts.path.strip("/").split("/")):
        raise InvalidReference(f"invalid prefix in {shown!r}: empty path segment ('//')")
    for segment in segments:
        if segment in (".", "..") or any(c.isspace() or not c.isprintable() or c == "\\" for c in segment):
            raise InvalidReference(
                f"invalid prefix segment {segment!r} in {shown!r}: no '.', '..', spaces, '\\' or control characters"
            )
    return S3Location(bucket, "/".join(segments))


def redacted(url: str) -> str:
    """`url` as it may be shown: any user and password before the host replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    return f"{scheme}://{netloc}{slash}{path}"


def _bucket_problem(bucket: str) -> str:
    """Why `bucket` breaks S3's general-purpose bucket naming rules ("" when it does not)."""
    if not 3 <= len(bucket) <= 63:
        return f"{len(bucket)} characters; a bucket name has 3 to 63"
    if not _BUCKET.fullmatch(bucket):
        return "use lower-case letters, digits, '.' and '-', starting and ending with a letter or digit"
    if ".." in bucket:
        return "two adjacent periods"
    try:
        ipaddress.IPv4Address(bucket)
        return "formatted as an IP address"
    except ValueError:
        pass
    for prefix in _RESERVED_PREFIXES:
        if bucket.startswith(prefix):
            return f"names starting with {prefix!r} are reserved by S3"
    for suffix in _RESERVED_SUFFIXES:
        if bucket.endswith(suffix):
            return f"names ending with {suffix!r} are reserved by S3"
    return ""


def _endpoint(endpoint: str) -> str:
    """`--s3-endpoint` checked: http(s)://HOST[:PORT] with nothing after it."""
    parts = urlsplit(endpoint)
    if parts.username or parts.password or "@" in parts.netloc:
        raise InvalidReference(
            "invalid --s3-endpoint: no credentials in the URL; they come from the AWS environment or --aws-profile"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise InvalidReference(f"invalid --s3-endpoint {redacted(endpoint)!r}: expected http(s)://HOST[:PORT]")
    return f"{parts.scheme}://{parts.netloc}"


def _session(profile: str = "") -> Any:
    import boto3
    import botocore.exceptions

    try:
        return boto3.Session(profile_name=profile or None)
    except botocore.exceptions.ProfileNotFound:
        raise InvalidReference(
            f"no AWS profile {profile!r} in ~/.aws/config or ~/.aws/credentials: check --aws-profile"
        ) from None


def resolve_region(region: str = "", profile: str = "") -> str:
    """`--s3-region`, else the region of boto3's configuration (environment, profile), else us-east-1."""
    return region or _session(profile).region_name or "us-east-1"


def resolve_credentials(profile: str = "") -> S3Credentials:
    """The credentials boto3's own chain finds (environment, ~/.aws, the profile, roles), frozen."""
    import botocore.exceptions

    session = _session(profile)
    try:
        found = session.get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
    except botocore.exceptions.BotoCoreError as exc:
        raise RuntimeFailure(f"the AWS credentials could not be loaded: {exc}") from None
    if frozen is None or not frozen.access_key:
        raise RuntimeFailure(
            "no AWS credentials found (environment, ~/.aws, profile): set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, run `aws configure`, or pass --aws-profile NAME"
        )
    return S3Credentials(frozen.access_key, frozen.secret_key or "", frozen.token or "", str(found.method or ""))


def storage_section(
    location: S3Location,
    *,
    region: str,
    endpoint: str = "",
    credentials: S3Credentials | None = None,
    registry_version: str = "",
) -> dict[str, dict[str, object]]:
    """The registry config's `storage` entry for S3 (`{"s3": {...}}`; delete and cache are the runtime's).

    An endpoint (MinIO, Ceph, moto) means path-style addressing (`forcepathstyle`: 2.8 does it
    for any endpoint on its own, 3.x needs it said) and `secure` per its scheme. Temporary
    credentials need `sessiontoken`, which registry 2.x does not have (`registry_version` tells).
    """
    s3: dict[str, object] = {"bucket": location.bucket, "region": region, "v4auth": True}
    if location.prefix:
        s3["rootdirectory"] = "/" + location.prefix
    if endpoint:
        endpoint = _endpoint(endpoint)
        s3["regionendpoint"] = endpoint
        s3["forcepathstyle"] = True
        s3["secure"] = endpoint.startswith("https://")
    if credentials is not None and credentials.token and credentials.method not in _ROLE_METHODS:
        if registry_version.startswith("2."):
            raise RuntimeFailure(
                f"these AWS credentials are temporary ({credentials.method or 'with a session token'}) and registry "
                f"{registry_version} cannot take a session token: use long-lived keys (--aws-profile), an instance "
                "role, or registry 3 (--runtime docker)"
            )
    if credentials is not None and credentials.method not in _ROLE_METHODS:
        s3["accesskey"] = credentials.access_key
        s3["secretkey"] = credentials.secret_key
        if credentials.token:
            s3["sessiontoken"] = credentials.token
    return {"s3": s3}


def ensure_bucket(location: S3Location, *, region: str, endpoint: str = "", profile: str = "", create: bool) -> bool:
    """Check the bucket answers with these credentials; create it when missing only if `create`.

    True when it was created. Errors say whether the bucket is missing, forbidden or unreachable.
    """
    import botocore.exceptions

    client = _session(profile).client("s3", region_name=region, endpoint_url=_endpoint(endpoint) if endpoint else None)
    where = f" at {endpoint}" if endpoint else ""
    try:
        client.head_bucket(Bucket=location.bucket)
        return False
    except botocore.exceptions.ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 403:
            raise RuntimeFailure(
                f"access to bucket {location.bucket}{where} is denied for these AWS credentials: "
                "check --aws-profile and the bucket's policy"
            ) from None
        if status != 404 and exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise RuntimeFailure(f"bucket {location.bucket}{where} cannot be checked: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise RuntimeFailure(f"the S3 endpoint{where or ' of ' + region} does not answer: {exc}") from None
    if not create:
        raise RuntimeFailure(
            f"bucket {location.bucket} does not exist{where}: create it, or add --create-bucket to let jindr do it"
        )
    kwargs: dict[str, Any] = {"Bucket": location.bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        raise RuntimeFailure(f"bucket {location.bucket} could not be created{where}: {exc}") from None
    return True


def registry_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment for a registry on S3 storage, and one notice line per thing held back.

    No AWS_* variable goes on: the S3 section holds what the driver needs, so keys stay out of the
    process's environment. AWS_CA_BUNDLE is the one worth saying: registry 2.8.2's S3 driver panics
    at start when it is set.
    """
    env = {k: v for k, v in environ.items() if not k.startswith("AWS_")}
    notices = []
    if environ.get("AWS_CA_BUNDLE"):
        notices.append(
            "AWS_CA_BUNDLE is not passed to the registry: its S3 driver (2.8) panics with it; "
            "if the endpoint needs that CA, set SSL_CERT_FILE for the registry instead"
        )
    return env, notices
