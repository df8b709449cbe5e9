"""Open Inference Protocol v2 server on ONNX Runtime (`python -m service`)."""

import os

__version__ = "0.1.0"

# onnxruntime (1.32 on Linux) otherwise opens a telemetry database under
# ~/.cache/Microsoft/DeveloperTools: a write that a read-only root filesystem refuses, and
# data nobody asked it to collect. Set here, before any module imports onnxruntime.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
