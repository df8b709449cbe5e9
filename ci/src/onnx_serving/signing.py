"""Keyless signing of what `publish` pushed, with cosign (publish in GitHub Actions): the job's
OIDC token proves who signed. Signed are each variant's index (with its platform manifests)
and every attached document (SBOM, provenance: attachments.py), so a multi-MB SBOM is signed
by digest and never sent to the transparency log whole; each platform image's provenance is
also attested (`slsaprovenance1`), the form policy engines verify. The command lines are in
commands.py."""

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


async def sign(
    signer: dagger.Container,
    images: list[str],
    attached: list[str],
    provenances: dict[str, str],
) -> None:
    """Sign each pushed `ref@sha256:…` of `images` (recursively: its platform manifests
    too) and of `attached`, and attest each platform image's provenance predicate (JSON,
    by the image's reference)."""
    signed = signer
    for reference in images:
        signed = signed.with_exec(commands.cosign_sign_command(reference, recursive=True))
    for reference in attached:
        signed = signed.with_exec(commands.cosign_sign_command(reference, recursive=False))
    for n, (reference, predicate) in enumerate(provenances.items()):
        path = f"/tmp/provenance-{n}.json"
        signed = signed.with_new_file(path, predicate).with_exec(
            commands.cosign_attest_command(reference, path)
        )
    await signed.sync()


async def verify(signer: dagger.Container, reference: str, source_url: str) -> None:
    """Raise unless `reference` is signed by a workflow of the repository at `source_url`."""
    if not source_url:
        raise ValueError(f"{reference}: no --source-url to check its signature against")
    await signer.with_exec(commands.cosign_verify_command(reference, source_url)).sync()
