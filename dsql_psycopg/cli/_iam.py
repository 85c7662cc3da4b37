"""Credential steps of ``check``: which provider supplied them, and the token.

Looking up credentials calls no AWS service for static ones (environment,
files); the token is signed locally.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any
from urllib.parse import parse_qs

import boto3
import botocore.credentials
import botocore.exceptions

from dsql_psycopg import _auth as auth
from dsql_psycopg._naming import ENDPOINT_FORM
from dsql_psycopg.errors import DsqlError

from ._steps import Outcome, State, StepFailed

_NO_CREDENTIALS_HINT = auth.credentials_hint("--profile")


def credentials(state: State) -> Outcome:
    """Find the credentials boto3's chain would use, and the signing region."""
    params = state.need_params()
    try:
        session = boto3.Session(profile_name=params.profile)
        found = session.get_credentials()
    except botocore.exceptions.ProfileNotFound as ex:
        raise StepFailed(
            str(ex),
            "add the profile to ~/.aws/config (or AWS_CONFIG_FILE), or choose"
            " another with --profile or AWS_PROFILE",
        ) from None
    except botocore.exceptions.BotoCoreError as ex:
        raise StepFailed(
            f"the AWS credential chain failed: {ex}", _NO_CREDENTIALS_HINT
        ) from None
    if found is None:
        raise StepFailed("no AWS credentials found", _NO_CREDENTIALS_HINT)
    region = params.region or session.region_name
    if region is None:
        raise StepFailed(
            f"no AWS region for host {params.host}",
            "pass --region (or region= in the target), set AWS_REGION, or use"
            f" the endpoint name {ENDPOINT_FORM} as host",
        )
    state.session, state.region = session, region
    info: dict[str, Any] = {
        "provider": found.method,
        "region": region,
        "profile": session.profile_name,
    }
    detail = f"from provider {found.method!r}"
    # Refreshable credentials fetch on first read; leave that to the token step.
    if not isinstance(found, botocore.credentials.RefreshableCredentials):
        info["access_key_suffix"] = found.access_key[-4:]
        info["temporary"] = found.token is not None
        kind = "temporary key" if found.token is not None else "key"
        detail += f" ({kind} ending {found.access_key[-4:]})"
    if params.profile or os.environ.get("AWS_PROFILE"):
        detail += f", profile {session.profile_name}"
    return Outcome(f"{detail}; signing for region {region}", info)


def token(state: State) -> Outcome:
    """Sign a token with those credentials and say what it allows."""
    params = dataclasses.replace(
        state.need_params(), session=state.session, region=state.region, profile=None
    )
    try:
        state.token = auth.make_token(params)
    except DsqlError as ex:
        raise StepFailed(str(ex), _NO_CREDENTIALS_HINT) from None
    query = parse_qs(state.token.partition("?")[2])
    action = query.get("Action", ["?"])[0]
    signed = datetime.datetime.strptime(
        query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ"
    ).replace(tzinfo=datetime.timezone.utc)
    lifetime = int(query["X-Amz-Expires"][0])
    expires = signed + datetime.timedelta(seconds=lifetime)
    info = {
        "action": action,
        "host": state.token.partition("/")[0],
        "expires": expires.isoformat(),
        "lifetime_s": lifetime,
        "temporary_credentials": "X-Amz-Security-Token" in query,
    }
    return Outcome(
        f"{action} token for {info['host']} as {params.user},"
        f" expires {expires:%Y-%m-%d %H:%M:%S} UTC (in {lifetime} s)",
        info,
    )
