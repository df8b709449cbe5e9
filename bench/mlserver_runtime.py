"""MLServer's side of the comparison: a minimal custom ONNX Runtime model class.

MLServer has no built-in ONNX runtime, so this is what its docs suggest: an `MLModel`
subclass that decodes the V2 request with `NumpyCodec` and runs one ORT session on one
thread (the same budget as every other contender). Loaded by `mlserver start` from the
settings folder that `bench/servers.py` writes; it runs in bench/.venv-mlserver.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.types import InferenceRequest, InferenceResponse  # type: ignore[import-not-found]


class OnnxRuntimeModel(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        uri = self.settings.parameters.uri
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._input_name = self._session.get_inputs()[0].name
        self._output_names = [output.name for output in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0])
        results = self._session.run(None, {self._input_name: rows})
        outputs = [
            NumpyCodec.encode_output(name, value)
            for name, value in zip(self._output_names, results, strict=True)
        ]
        return InferenceResponse(model_name=self.name, outputs=outputs)
