"""Build a megatron-core ``GPTModel`` for a :class:`ModelArch` on this rank's TP/PP slice.

The layer spec is Transformer Engine's when TE imports and CUDA is present, else
megatron-core's local spec (RMSNorm via torch); ``spec_kind()`` says which.
Requires ``minitron.parallel.runtime.init`` first (megatron-core reads its
process groups from ``parallel_state``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import torch
import torch.nn.functional as F

from minitron.errors import ConfigError
from minitron.models.arch import ModelArch
from minitron.models.rope import model_inv_freq
from minitron.parallel.vocab import mask_padded_vocab

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def parse_dtype(name: str, field: str = "dtype") -> torch.dtype:
    if name not in DTYPES:
        raise ConfigError(field, f"{name!r} is not a dtype; valid: {', '.join(DTYPES)}")
    return DTYPES[name]


@functools.cache
def te_available() -> bool:
    """Transformer Engine is importable and usable (it needs CUDA)."""
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine.pytorch  # noqa: F401  (raises RuntimeError without CUDA)
    except Exception:
        return False
    return True


def spec_kind(impl: str = "auto") -> str:
    """``transformer_engine`` or ``local`` for ``impl`` in auto | local | transformer_engine."""
    if impl == "local":
        return "local"
    if impl == "transformer_engine":
        if not te_available():
            raise ConfigError(
                "transformer_impl",
                "transformer_engine was asked for but TE is not "
                "importable with CUDA here; use 'auto' or 'local'",
            )
        return "transformer_engine"
    if impl != "auto":
        raise ConfigError(
            "transformer_impl", f"{impl!r}: valid are auto, local, transformer_engine"
        )
    return "transformer_engine" if te_available() else "local"


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a model runs in training, beyond its layout: megatron-core's sequence parallelism
    and activation recomputation (see ``TrainingBase`` for the user-facing fields)."""

    sequence_parallel: bool = False
    recompute: str = "none"  # none | selective | full
    recompute_num_layers: int = 1

    @classmethod
    def of(cls, cfg) -> Execution:
        """From a config holding the TrainingBase fields."""
        return cls(cfg.sequence_parallel, cfg.recompute, cfg.recompute_num_layers)


def check_layout(arch: ModelArch, tp: int, pp: int) -> None:
    """Fail early, naming the field, when ``arch`` cannot be split ``tp`` x ``pp`` ways."""
    if tp < 1 or pp < 1:
        raise ConfigError("tp" if tp < 1 else "pp", "must be >= 1")
    if arch.num_query_groups % tp:
        raise ConfigError(
            "tp",
            f"tp={tp} must divide num_query_groups={arch.num_query_groups} "
            f"(each rank holds whole KV groups); valid tp: "
            f"{[d for d in range(1, arch.num_query_groups + 1) if arch.num_query_groups % d == 0]}",
        )
    if arch.ffn_hidden_size % tp:
        raise ConfigError("tp", f"tp={tp} must divide ffn_hidden_size={arch.ffn_hidden_size}")
    if arch.padded_vocab_size % tp:
        raise ConfigError(
            "tp",
            f"tp={tp} must divide padded_vocab_size={arch.padded_vocab_size}; "
            "re-import with a vocab_pad_multiple that tp divides",
        )
    if arch.num_layers % pp:
        raise ConfigError("pp", f"pp={pp} must divide num_layers={arch.num_layers}")


def transformer_config(
    arch: ModelArch,
    tp: int,
    pp: int,
    dtype: torch.dtype,
    init_weights: bool = True,
    seed_std: float = 0.02,
    execution: Execution = Execution(),
):
    from megatron.core.transformer.transformer_config import TransformerConfig

    check_layout(arch, tp, pp)
    on_gpu = torch.cuda.is_available()
    ex = execution
    recompute = (
        {}
        if ex.recompute == "none"
        else (
            {"recompute_granularity": "selective", "recompute_modules": ["core_attn"]}
            if ex.recompute == "selective"
            else {
                "recompute_granularity": "full",
                "recompute_method": "uniform",
                "recompute_num_layers": ex.recompute_num_layers,
            }
        )
    )
    return TransformerConfig(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_attention_heads,
        num_query_groups=arch.num_query_groups,
        kv_channels=arch.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=arch.norm_eps,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        attention_softmax_in_fp32=True,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        sequence_parallel=ex.sequence_parallel and tp > 1,
        **recompute,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu_initialization=not on_gpu,
        perform_initialization=init_weights,
        init_method_std=seed_std,
        gradient_accumulation_fusion=False,
        bias_activation_fusion=on_gpu,
        masked_softmax_fusion=False,
        persist_layer_norm=False,
        apply_rope_fusion=False,
        bias_dropout_fusion=on_gpu,
    )


class LocalNorm:
    """megatron-core's torch norm for the local spec, also under sequence parallelism: torch's
    norm is built as if sequence parallelism were off (megatron-core refuses it there,
    ``transformer/torch_norm.py``) and its weight is tagged ``sequence_parallel`` so that
    ``finalize_model_grads`` all-reduces its gradient over the TP ranks, each of which saw
    only its slice of the sequence. Its weight takes the model's dtype (torch builds it in
    fp32, which in a bf16 model would leave the norms out of mixed precision)."""

    def __new__(cls, config, hidden_size: int, eps: float = 1e-5, **kwargs):
        from megatron.core.transformer.torch_norm import WrappedTorchNorm

        sp = config.sequence_parallel
        if sp:
            config = copy.copy(config)
            config.sequence_parallel = False
        norm = WrappedTorchNorm(config, hidden_size, eps, **kwargs).to(config.params_dtype)
        for p in norm.parameters():
            p.sequence_parallel = sp
        return norm


def layer_spec(kind: str):
    from megatron.core.models.gpt import gpt_layer_specs as specs

    if kind == "transformer_engine":
        return specs.get_gpt_layer_with_transformer_engine_spec()
    from minitron.models.attention import SDPAttention

    spec = specs.get_gpt_layer_local_spec(normalization="RMSNorm")
    spec.submodules.self_attention.submodules.core_attention = SDPAttention
    spec.submodules.input_layernorm = LocalNorm
    spec.submodules.pre_mlp_layernorm = LocalNorm
    return spec


def block_spec(kind: str, config):
    """The decoder's spec: for the local spec a block whose final norm is :class:`LocalNorm`
    too (megatron-core would pick its own torch norm, which refuses sequence parallelism)."""
    spec = layer_spec(kind)
    if kind == "transformer_engine":
        return spec
    from megatron.core.transformer.spec_utils import ModuleSpec
    from megatron.core.transformer.transformer_block import (
        TransformerBlock,
        TransformerBlockSubmodules,
        get_num_layers_to_build,
    )

    return ModuleSpec(
        module=TransformerBlock,
        submodules=TransformerBlockSubmodules(
            layer_specs=[spec] * get_num_layers_to_build(config), layer_norm=LocalNorm
        ),
    )


def mark_tensor_parallel(model) -> None:
    """Tag every split weight ``tensor_model_parallel`` (megatron-core does so only when it
    initialises the weights itself, ``tensor_parallel/layers.py``): without the tag the
    optimizer's gradient norm drops split parameters on TP ranks other than 0."""
    from megatron.core.tensor_parallel import layers

    dims = {
        layers.ColumnParallelLinear: 0,
        layers.RowParallelLinear: 1,
        layers.VocabParallelEmbedding: 0,
    }
    for m in model.modules():
        dim = next((d for cls, d in dims.items() if isinstance(m, cls)), None)
        w = getattr(m, "weight", None) if dim is not None else None
        if w is not None and not hasattr(w, "tensor_model_parallel"):
            layers.set_tensor_model_parallel_attributes(w, True, dim, 1)


def build_model(
    arch: ModelArch,
    dtype: torch.dtype = torch.float32,
    impl: str = "auto",
    init_weights: bool = True,
    execution: Execution = Execution(),
):
    """This rank's ``GPTModel`` (its PP stage, its TP shards), on GPU when there is one.

    ``init_weights=False`` skips random initialisation (weights are about to be loaded);
    ``execution`` switches on sequence parallelism and recomputation for training.
    """
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel

    tp = ps.get_tensor_model_parallel_world_size()
    pp = ps.get_pipeline_model_parallel_world_size()
    config = transformer_config(arch, tp, pp, dtype, init_weights, execution=execution)
    model = GPTModel(
        config=config,
        transformer_layer_spec=block_spec(spec_kind(impl), config),
        vocab_size=arch.padded_vocab_size,
        max_sequence_length=arch.max_position_embeddings,
        pre_process=ps.is_pipeline_first_stage(),
        post_process=ps.is_pipeline_last_stage(),
        parallel_output=True,
        share_embeddings_and_output_weights=arch.tie_word_embeddings,
        position_embedding_type="rope",
        rotary_base=arch.rope_theta,
    )
    model.rotary_pos_emb.inv_freq = model_inv_freq(
        arch.head_dim, arch.rope_theta, arch.rope_scaling
    ).to(model.rotary_pos_emb.inv_freq.device)
    if model.post_process and arch.padded_vocab_size > arch.vocab_size:
        tp_rank = ps.get_tensor_model_parallel_rank()

        def hide_padding(_module, _inputs, output):  # padding rows never get probability
            logits, bias = output
            # inference gathers the vocabulary (runtime_gather_output): the whole row is rank 0's view
            rank = 0 if logits.shape[-1] == arch.padded_vocab_size else tp_rank
            return mask_padded_vocab(logits, arch.vocab_size, rank), bias

        model.output_layer.register_forward_hook(hide_padding)
    mark_tensor_parallel(model)
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    model.minitron_arch = arch
    return model


def global_layer_index(model, local_index: int) -> int:
    """The layer's index in the whole (unsplit) model."""
    return model.decoder.layers[local_index].layer_number - 1
