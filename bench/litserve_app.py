"""LitServe's side of the comparison: the same ONNX model behind a `LitAPI`.

Run in bench/.venv-litserve: `MODEL_PATH=... python -m bench.litserve_app PORT`.
Same body as the naive app (`{"data": [[...]]}`), one ORT thread, one inference worker.
"""

import os
import sys
from typing import Any

import litserve  # type: ignore[import-not-found]
import numpy as np
import numpy.typing as npt
import onnxruntime as ort


class OnnxRuntimeAPI(litserve.LitAPI):  # type: ignore[misc]
    def setup(self, device: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = os.environ["MODEL_PATH"]
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def decode_request(self, request: dict[str, Any]) -> npt.NDArray[np.float32]:
        return np.asarray(request["data"], dtype=np.float32)

    def predict(self, rows: npt.NDArray[np.float32]) -> list[Any]:
        result: list[Any] = self.session.run(None, {self.input_name: rows})
        return result

    def encode_response(self, output: list[Any]) -> dict[str, Any]:
        logits, label = output
        return {"logits": logits.tolist(), "label": label.tolist()}


if __name__ == "__main__":
    server = litserve.LitServer(OnnxRuntimeAPI(), accelerator="cpu", workers_per_device=1)
    server.run(
        host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", generate_client_file=False
    )
