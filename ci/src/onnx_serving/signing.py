"""Keyless signing of pushed digests with cosign (publish in GitHub Actions): the job's OIDC
token proves who signed, and each platform's SBOM is attached as a signed attestation. The
command lines are in commands.py."""

from __future__ import annotations

import dagger
from dagger import dag

from . import commands


def signer(
    checker: dagger.Container,
    host: str,
    username: str,
    password: dagger.Secret,
    oidc_request_url: dagger.Secret,
    oidc_request_token: dagger.Secret,
) -> dagger.Container:
    """The check container with the pinned cosign, logged in to the registry, and the OIDC
    request secrets that keyless signing exchanges for a certificate."""
    cosign = dag.container().from_(commands.COSIGN_IMAGE).file(commands.COSIGN_BINARY)
    return (
        checker.with_file("/tmp/cosign/cosign", cosign, permissions=0o755)
        .with_env_variable("PATH", "/tmp/cosign:$PATH", expand=True)
        .with_env_variable("HOME", "/tmp")
        .with_env_variable("REGISTRY", host)
        .with_env_variable("REGISTRY_USERNAME", username)
        .with_secret_variable("REGISTRY_PASSWORD", password)
        .with_exec(["sh", "-c", commands.COSIGN_LOGIN_SCRIPT])
        .with_secret_variable("ACTIONS_ID_TOKEN_REQUEST_URL", oidc_request_url)
        .with_secret_variable("ACTIONS_ID_TOKEN_REQUEST_TOKEN", oidc_request_token)
    )


async def sign(signer: dagger.Container, reference: str, sboms: list[dagger.File]) -> None:
    """Sign a pushed digest and attach each platform's SBOM as an attestation."""
    signed = signer.with_exec(commands.cosign_sign_command(reference))
    for n, sbom in enumerate(sboms):
        path = f"/tmp/sbom-{n}.cdx.json"
        signed = signed.with_file(path, sbom).with_exec(
            commands.cosign_attest_command(reference, path)
        )
    await signed.sync()
