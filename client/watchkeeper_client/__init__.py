"""Watchkeeper's client for serving processes.

    wk = watchkeeper_client.Deployment("https://watchkeeper.example.com", token, "fraud", instance="web-1")
    model = wk.model(fallback_path="model.onnx")
    result = model.predict(X, ids=request_ids)   # logged in the background, tagged with result.version
    wk.labels({"req-1": "fraud"})
    wk.close()                                   # or `with wk:`; also done at exit
"""

__version__ = "0.1.0"

from watchkeeper_client.deployment import Deployment
from watchkeeper_client.errors import (
    ModelRejected,
    NoModel,
    Refused,
    Unreachable,
    WatchkeeperError,
)
from watchkeeper_client.prediction_log import LogStats
from watchkeeper_client.runner import ModelRunner, Predictions

__all__ = [
    "Deployment", "LogStats", "ModelRejected", "ModelRunner", "NoModel", "Predictions", "Refused", "Unreachable",
    "WatchkeeperError", "__version__",
]
