"""Maintaining a model, as pure computation: which method fits which graph, the compression methods, and the
conversion of scikit-learn estimators to ONNX. No Django here; workers/jobs.py runs these as jobs."""
