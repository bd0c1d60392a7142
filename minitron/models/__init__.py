"""Llama-family architectures on megatron-core: config, build, HF conversion, counting."""
