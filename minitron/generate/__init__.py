"""Text generation on megatron-core models."""
