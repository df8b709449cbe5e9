"""bench/image_report.py's reading of BuildKit's plain progress (no engine needed)."""

from __future__ import annotations

from bench.image_report import Build, Sizes, parse_plain_progress, size_table
from onnx_serving.variants import Variant

# Shape of `docker build --progress=plain` output (BuildKit 0.8, Docker 20.10) for a rebuild
# after a code edit: the dependency step is CACHED, the code steps ran.
REBUILD_LOG = """\
#1 [internal] load build definition from Dockerfile.optimized
#1 DONE 0.0s
#4 [builder 1/3] FROM python:3.11-slim-bookworm
#4 DONE 0.0s
#7 [builder 2/3] COPY requirements/runtime.lock /tmp/runtime.lock
#7 CACHED
#8 [builder 3/3] RUN --mount=type=cache,target=/root/.cache/pip if true; then pip install x; fi
#8 CACHED
#11 [stage-1 5/7] COPY service/ /app/service/
#11 DONE 0.1s
#12 [stage-1 6/7] RUN python3 -m compileall -q /app/service
#12 0.21 listing
#12 DONE 0.4s
"""


def test_rebuild_log_shows_which_steps_ran() -> None:
    steps = parse_plain_progress(REBUILD_LOG)
    assert steps == [
        "[stage-1 5/7] COPY service/ /app/service/",
        "[stage-1 6/7] RUN python3 -m compileall -q /app/service",
    ]
    assert Build(1.0, steps).dependencies_cached


def test_a_rerun_dependency_step_is_reported() -> None:
    log = REBUILD_LOG.replace("#8 CACHED", "#8 DONE 12.0s")
    build = Build(13.0, parse_plain_progress(log))
    assert not build.dependencies_cached
    assert "pip install" in build.rerun_steps[0]


def test_size_table_ratios() -> None:
    sizes = Sizes(
        base=100_000_000,
        venv=150_000_000,
        images={Variant.basic: 1_050_000_000, Variant.cpu: 262_500_000},
    )
    assert sizes.lower_bound == 250_000_000
    assert sizes.ratio(Variant.cpu) == 1.05
    assert sizes.cut(Variant.cpu) == 0.75
    table = size_table(sizes)
    assert "| cpu image | 262 MB | 1.05 (budget <= 1.10) | 75% |" in table
    assert "| basic image | 1,050 MB | 4.20 |  |" in table
