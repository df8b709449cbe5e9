"""The baseline: the FastAPI + ONNX Runtime app a newcomer writes first.

Deliberately ordinary: a Pydantic list-of-lists body, `session.run` in the handler,
`.tolist()` for the answer, a default `InferenceSession`. Run with
`MODEL_PATH=... uvicorn bench.naive_app:app`.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel

session = ort.InferenceSession(os.environ["MODEL_PATH"])
input_name = session.get_inputs()[0].name
app = FastAPI()


class PredictRequest(BaseModel):
    data: list[list[float]]


class PredictResponse(BaseModel):
    logits: list[list[float]]
    label: list[int]


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(request: PredictRequest) -> PredictResponse:
    logits, label = session.run(None, {input_name: np.array(request.data, dtype=np.float32)})
    return PredictResponse(logits=logits.tolist(), label=label.tolist())
