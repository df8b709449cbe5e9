"""Each image, run for real: healthy by its own HEALTHCHECK under a read-only root filesystem,
served to the stock Triton client (the smoke client the Dagger `test` function runs), as a
non-root user, and shut down gracefully by SIGTERM."""

from __future__ import annotations

import json
import urllib.error
from collections.abc import Callable

import pytest

from onnx_serving.images import IMAGE_UID, MODEL_DIR
from onnx_serving.variants import Variant
from tests.images.docker_support import REPO, VARIANTS, Container
from tests.images.serving import model_metadata, run_smoke, served_models
from tests.models_for_tests import repository_models, write_mlp

pytestmark = pytest.mark.docker


@pytest.mark.timeout(2400)
@pytest.mark.parametrize("variant", VARIANTS)
def test_image_serves_read_only_as_non_root_and_stops_on_sigterm(
    variant: Variant,
    built_image: Callable[[Variant], str],
    start_container: Callable[..., Container],
) -> None:
    # No tmpfs either: the server must need no writable path at all.
    container = start_container(built_image(variant), "--read-only")
    container.wait_healthy()

    smoke = run_smoke(container.url)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert smoke.stdout.startswith("smoke: OK"), smoke.stdout

    assert container.exec("id", "-u") == str(IMAGE_UID)
    user = container.docker.output("inspect", "--format", "{{.Config.User}}", container.name)
    assert user.split(":")[0] == str(IMAGE_UID)

    # Exec-form entrypoint: the server itself gets SIGTERM and exits 0 (a shell as PID 1
    # would swallow it and be SIGKILLed after the grace period: exit 137).
    assert container.stop() == 0, container.logs()[-3000:]


def test_smoke_client_fails_clearly_on_unknown_model(
    built_image: Callable[[Variant], str], start_container: Callable[..., Container]
) -> None:
    container = start_container(built_image(Variant.cpu))
    container.wait_healthy()
    smoke = run_smoke(container.url, "no-such-model", "--timeout", "2")
    assert smoke.returncode == 1
    assert "smoke: FAIL" in smoke.stderr and "no-such-model" in smoke.stderr, smoke.stderr


@pytest.mark.timeout(2400)
def test_gpu_image_without_gpu_falls_back_to_cpu_loudly(
    built_image: Callable[[Variant], str], start_container: Callable[..., Container]
) -> None:
    container = start_container(built_image(Variant.gpu), "--read-only")
    container.wait_healthy()
    env = container.docker.output("inspect", "--format", "{{json .Config.Env}}", container.name)
    assert "EXECUTION_PROVIDERS=cuda,cpu" in json.loads(env)

    # The provider actually in use, not the ones compiled in (CUDA is compiled in).
    for model in served_models(container.url):
        metadata = model_metadata(container.url, model)
        assert metadata["execution_providers"] == ["CPUExecutionProvider"], metadata
    compiled_in = container.exec(
        "python", "-c", "import onnxruntime as o; print(o.get_available_providers())"
    )
    assert "CUDAExecutionProvider" in compiled_in
    warnings = [
        line
        for line in container.logs().splitlines()
        if "WARNING" in line and "CUDA" in line and "CPUExecutionProvider" in line
    ]
    assert warnings, container.logs()[-3000:]


def test_model_volume_overrides_baked_model(
    built_image: Callable[[Variant], str],
    start_container: Callable[..., Container],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A model repository mounted over /models replaces the baked-in one."""
    repository = tmp_path_factory.mktemp("models")
    target = repository / "classifier" / "7"
    target.mkdir(parents=True)
    write_mlp(target / "model.onnx")
    repository.chmod(0o755)
    for path in repository.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = start_container(
        built_image(Variant.cpu), "--read-only", "--volume", f"{repository}:{MODEL_DIR}:ro"
    )
    container.wait_healthy()
    smoke = run_smoke(container.url, "classifier")
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert model_metadata(container.url, "classifier")["versions"] == ["7"]
    # Nothing of the baked-in repository is left, whatever it holds.
    assert served_models(container.url) == {"classifier": ["7"]}
    for baked in repository_models(REPO / "models").keys() - {"classifier"}:
        with pytest.raises(urllib.error.HTTPError) as missing:
            model_metadata(container.url, baked)
        assert missing.value.code == 404
