#!/bin/sh
# Build /opt/venv from one hashed lock: every Dockerfile target's dependency stage runs this
# (dockerfiles/Dockerfile), so the install rules exist once.
#   build-venv.sh LOCK
# - The CA bundle BuildKit secret (optional) is mounted only for the RUN that calls this; pip
#   trusts it for a TLS-intercepting proxy, and it lands in no layer.
# - --require-hashes --no-deps --only-binary=:all:: every byte pinned, nothing resolved, no
#   sdist build script runs.
# - pip/setuptools, the packages' own tests/ (numpy ships ~17 MB) and the C++ sources pysimdjson
#   ships beside its built module (~7.7 MB) never run in the image.
# - CUDA wheels (GPU lock): keep what onnxruntime.preload_dlls() and the CUDA provider load
#   (cublasLt, cublas, nvrtc, curand, cufft, cudart, cudnn, nvJitLink); drop headers, static
#   libraries, the alternative NVRTC build (*.alt.*, ~113 MB) and the FFTW/NVBLAS wrappers.
# pip compiles .pyc files at install time; they stay: a read-only container cannot write them.
set -eu
lock=$1
if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
python3 -m venv /opt/venv
/opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r "$lock"
if [ "${KEEP_PIP:-0}" != 1 ]; then
    /opt/venv/bin/pip uninstall --yes --quiet pip setuptools
fi
find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +
rm -f /opt/venv/lib/python3*/site-packages/simdjson/*.cpp \
    /opt/venv/lib/python3*/site-packages/simdjson/*.h \
    /opt/venv/lib/python3*/site-packages/simdjson/*.pyx
for nvidia in /opt/venv/lib/python3*/site-packages/nvidia; do
    [ -d "$nvidia" ] || continue
    find "$nvidia" -depth -type d -name include -exec rm -rf {} +
    find "$nvidia" -type f \( -name '*.a' -o -name '*.h' -o -name '*.alt.so*' \
        -o -name 'libcufftw.so*' -o -name 'libnvblas.so*' \) -delete
done
