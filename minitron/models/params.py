"""Exact parameter counts of a Llama-family architecture (pure arithmetic).

Non-embedding parameters exclude the input embedding and the output layer (the
paper's Table 3 convention); a tied output layer counts once, in the embedding.
Counts use the tokenizer vocabulary, not megatron-core's padded one.
"""

from __future__ import annotations

from minitron.models.arch import ModelArch


def count_params(arch: ModelArch) -> dict[str, int]:
    h, d = arch.hidden_size, arch.head_dim
    q, g = arch.num_attention_heads, arch.num_query_groups
    attention = h * (q * d) + 2 * h * (g * d) + (q * d) * h  # q, k, v, o
    mlp = 3 * h * arch.ffn_hidden_size  # gate, up, down
    norms = 2 * h
    per_layer = attention + mlp + norms
    embedding = arch.vocab_size * h
    output = 0 if arch.tie_word_embeddings else arch.vocab_size * h
    non_embedding = arch.num_layers * per_layer + h  # + final norm
    return {
        "total": non_embedding + embedding + output,
        "non_embedding": non_embedding,
        "embedding": embedding,
        "output": output,
        "per_layer": per_layer,
        "attention_per_layer": attention,
        "mlp_per_layer": mlp,
    }


def human(n: int) -> str:
    """4_512_... -> '4.5B', 134_515_008 -> '134.5M' (one decimal, as the paper prints)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def describe_arch(arch: ModelArch) -> str:
    return (
        f"{arch.family}: hidden {arch.hidden_size}, ffn {arch.ffn_hidden_size}, "
        f"layers {arch.num_layers}, heads {arch.num_attention_heads}, "
        f"groups {arch.num_query_groups}, head_dim {arch.head_dim}, vocab {arch.vocab_size}"
        + (", tied embeddings" if arch.tie_word_embeddings else "")
    )


def format_counts(arch: ModelArch, counts: dict[str, int]) -> str:
    rows = [
        ("total parameters", counts["total"]),
        ("non-embedding parameters", counts["non_embedding"]),
        ("embedding + output parameters", counts["embedding"] + counts["output"]),
    ]
    lines = [describe_arch(arch)]
    lines += [f"{name:<30}{n:>16,}  ({human(n)})" for name, n in rows]
    return "\n".join(lines)
