"""Core attention for the local (non-TE) layer spec: one fused SDPA call.

megatron-core's local ``DotProductAttention`` materialises ``[b, heads, s, s]``
scores with baddbmm, a masked softmax and bmm; on CPU that is about half the
model's forward time. ``SDPAttention`` keeps its constructor, parameters and
checkpoint contract and computes the same thing with
``torch.nn.functional.scaled_dot_product_attention`` (causal, GQA without
repeating K/V), or with a boolean mask (packed sequences: block-diagonal
causal). Anything it does not cover (dropout while training, sliding windows,
softmax offsets, attention biases) goes to the parent implementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType


class SDPAttention(DotProductAttention):
    """``[sq, b, np, hn]`` queries, ``[sk, b, ng, hn]`` keys/values -> ``[sq, b, np * hn]``."""

    def _fused_ok(
        self, query, key, attention_mask, attn_mask_type, attention_bias, packed_seq_params
    ) -> bool:
        cfg = self.config
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        # causal over a whole sequence, or one new token against the KV cache (the inference
        # engine's decode steps pass no_mask: the single query may see every cached key)
        shape_ok = (mask_type == AttnMaskType.causal and query.shape[0] == key.shape[0]) or (
            mask_type == AttnMaskType.no_mask and query.shape[0] == 1
        )
        return (
            attention_bias is None
            and packed_seq_params is None
            and shape_ok
            and (attention_mask is None or attention_mask.dtype == torch.bool)
            and self.softmax_offset is None
            and not cfg.apply_query_key_layer_scaling
            and cfg.window_size is None
            and not (self.training and self.attention_dropout.p > 0)
        )

    def forward(
        self,
        query,
        key,
        value,
        attention_mask,
        attn_mask_type=None,
        attention_bias=None,
        packed_seq_params=None,
    ):
        if not self._fused_ok(
            query, key, attention_mask, attn_mask_type, attention_bias, packed_seq_params
        ):
            return super().forward(
                query, key, value, attention_mask, attn_mask_type, attention_bias, packed_seq_params
            )
        sq, b = query.shape[:2]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, hn]
        # megatron-core masks are True where attention is NOT allowed; SDPA wants the opposite.
        # A given mask (packed sequences) already includes causality.
        allowed = None if attention_mask is None else ~attention_mask
        causal = allowed is None and sq > 1
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=allowed,
            is_causal=causal,
            scale=self.softmax_scale,
            enable_gqa=q.shape[1] != k.shape[1],
        )
        return out.permute(2, 0, 1, 3).reshape(sq, b, -1)  # [sq, b, np * hn]
