"""AWS ECR as a copy destination: account, repository with lifecycle policy, and registry credentials.

Credentials come from `get_authorization_token` and go straight to the registry client: no
`docker login`, nothing written to disk. botocore's exceptions become JindrErrors here.
`JINDR_ECR_ENDPOINT` (host[:port]) points the registry side elsewhere (tests, VPC endpoints);
the AWS API side honours botocore's own `AWS_ENDPOINT_URL`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

from .client.auth import Credentials
from .errors import RegistryError, Unauthorized
from .refs import parse_registry

__all__ = ["EcrTarget", "ecr_target", "lifecycle_policy"]


def lifecycle_policy(keep: int) -> str:
    """Expire untagged images after a day; keep the newest `keep` images."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": "Expire untagged images after 1 day",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": 1,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": f"Keep the last {keep} images",
                    "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep},
                    "action": {"type": "expire"},
                },
            ]
        }
    )


class _DropTokenBodies(logging.Filter):
    """Drops botocore's DEBUG record of a response body that carries an ECR authorization token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "authorizationToken" not in record.getMessage()


def _quiet_token_bodies() -> None:
    # botocore.parsers logs every response body at DEBUG: with debug logging on (common in a
    # notebook), get_authorization_token's answer, a registry password, would reach the log.
    logger = logging.getLogger("botocore.parsers")
    if not any(isinstance(f, _DropTokenBodies) for f in logger.filters):
        logger.addFilter(_DropTokenBodies())


@dataclass(frozen=True)
class EcrTarget:
    """Where to copy: the ECR registry address, its credentials, and whether we created the repository."""

    registry: str
    credentials: Credentials
    repository: str
    created: bool
    region: str
    account: str


def ecr_target(
    repository: str, *, region: str | None = None, keep: int = 4, ecr_client: Any = None, sts_client: Any = None
) -> EcrTarget:
    """Find the account and region, make sure the repository exists (with the lifecycle policy), get a token."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    _quiet_token_bodies()
    try:
        session = boto3.session.Session(region_name=region) if region else boto3.session.Session()
        region = region or session.region_name
        if not region:
            raise RegistryError("no AWS region: pass --region or set one in your profile (AWS_REGION)")
        sts = sts_client or session.client("sts", region_name=region)
        ecr = ecr_client or session.client("ecr", region_name=region)
        account = sts.get_caller_identity()["Account"]
        created = False
        try:
            ecr.describe_repositories(repositoryNames=[repository])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "RepositoryNotFoundException":
                raise
            ecr.create_repository(repositoryName=repository)
            ecr.put_lifecycle_policy(repositoryName=repository, lifecyclePolicyText=lifecycle_policy(keep))
            created = True
        data = ecr.get_authorization_token()["authorizationData"][0]
    except NoCredentialsError:
        raise Unauthorized(
            "no AWS credentials: configure a profile (aws configure) or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        ) from None
    except NoRegionError:
        raise RegistryError("no AWS region: pass --region or set one in your profile (AWS_REGION)") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise RegistryError(f"AWS refused {exc.operation_name}: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise RegistryError(f"talking to AWS failed: {exc}") from None
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    endpoint = os.environ.get("JINDR_ECR_ENDPOINT")
    registry = parse_registry(endpoint) if endpoint else f"{account}.dkr.ecr.{region}.amazonaws.com"
    return EcrTarget(registry, Credentials(user, password), repository, created, region, account)
