"""Checkpoints: megatron-core dist_checkpointing with a manifest; HF safetensors I/O."""
