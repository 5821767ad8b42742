"""cpe against moto's server mode (STS, ECR) with a real registry standing in for the ECR endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest
from authrig import basic_auth_config, htpasswd
from jindr_run import jindr
from rig import ImageFactory, free_port, start_registry
from test_runtime import verify_pull

from jindr_nb.client import Credentials, RegistryClient

ACCOUNT = "123456789012"  # moto's default account
TOKEN_PASSWORD = f"{ACCOUNT}-auth-token"  # what moto's get_authorization_token hands out


@pytest.fixture()
def moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    with open(tmp_path / "moto.log", "wb") as log:
        proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"moto_server did not start: {(tmp_path / 'moto.log').read_text()[-500:]}")
            time.sleep(0.1)
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def fake_ecr_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The real registry, protected by exactly the credentials the ECR token carries."""
    reg = start_registry(
        tmp_path / "ecr", extra_config=basic_auth_config(htpasswd(tmp_path / "htpasswd", "AWS", TOKEN_PASSWORD))
    )
    monkeypatch.setenv("JINDR_ECR_ENDPOINT", reg.address)
    yield reg
    reg.stop()


def test_cpe_creates_the_repository_with_policy_then_reuses_it(moto, fake_ecr_registry, registry) -> None:
    with RegistryClient(registry.address) as c:
        pushed = ImageFactory(c).index("team/app", ["v1", "v2"])
    first = jindr("-r", registry.address, "cpe", "team/app:v1", "v2", "--region", "eu-west-1")
    assert "created with the lifecycle policy" in first.message
    assert [r.digest for r in first.rows] == [pushed.digest, pushed.digest]
    assert first.rows[0].destination == f"{fake_ecr_registry.address}/team/app:v1"
    ecr = boto3.client("ecr", region_name="eu-west-1")
    assert [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]] == ["team/app"]
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName="team/app")["lifecyclePolicyText"])
    rules = {r["selection"]["tagStatus"]: r["selection"] for r in policy["rules"]}
    assert rules["untagged"]["countNumber"] == 1 and rules["untagged"]["countUnit"] == "days"
    assert rules["any"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 4}
    with RegistryClient(fake_ecr_registry.address, credentials=Credentials("AWS", TOKEN_PASSWORD)) as d:
        verify_pull(d, "team/app", "v2", pushed)
    again = jindr("-r", registry.address, "cpe", "team/app:v1", "--region", "eu-west-1")
    assert "exists" in again.message and again.rows[0].bytes_copied == 0
    rendered = repr(first) + repr(again) + first.message + again.message
    assert TOKEN_PASSWORD not in rendered and "auth-token" not in rendered


def test_cpe_keep_and_missing_region(moto, fake_ecr_registry, registry) -> None:
    with RegistryClient(registry.address) as c:
        ImageFactory(c).single("solo", "1")
    jindr("-r", registry.address, "cpe", "solo:1", "--region", "us-east-2", "--keep", "7", "--to", "renamed/solo")
    ecr = boto3.client("ecr", region_name="us-east-2")
    policy = json.loads(ecr.get_lifecycle_policy(repositoryName="renamed/solo")["lifecyclePolicyText"])
    assert policy["rules"][1]["selection"]["countNumber"] == 7
    from jindr_nb.errors import RegistryError

    with pytest.raises(RegistryError, match="no AWS region"):
        jindr("-r", registry.address, "cpe", "solo:1")
    assert not any(
        "auth-token" in str(p.read_bytes()) for p in Path(os.environ["JINDR_CACHE_DIR"]).rglob("*") if p.is_file()
    )
