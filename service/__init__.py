"""Open Inference Protocol v2 server on ONNX Runtime (`python -m service`)."""

__version__ = "0.1.0"
