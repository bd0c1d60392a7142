"""Deployment formats: TensorRT-LLM checkpoints (HF export lives in recipes/export.py)."""
