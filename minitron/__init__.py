"""minitron: prune and distill Hugging Face LLMs with the Minitron recipe on megatron-core."""

__version__ = "0.1.0"
