"""A query-time copy of open_clip's text transformer with fp16 weights packed for fbgemm.

Only the weights are rounded to fp16 (activations and accumulation stay fp32), so the output
moves by ~1e-7 in cosine. Every linear layer is replaced, attention projections included
(`nn.MultiheadAttention` keeps its input projection as a bare parameter, which torch's dynamic
quantisation would leave in fp32).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F


class UnsupportedLayout(RuntimeError):
    """A text transformer built differently from the ones this packs (then queries use fp32)."""


class PackedLinear(torch.nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        b = None if bias is None else bias.detach().float().contiguous()
        self.packed = torch.ops.quantized.linear_prepack_fp16(weight.detach().float().contiguous(), b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic_fp16(x, self.packed)


class PackedAttention(torch.nn.Module):
    """Drop-in for a batch-first `nn.MultiheadAttention` as open_clip calls it."""

    def __init__(self, mha: torch.nn.MultiheadAttention) -> None:
        super().__init__()
        if not (mha.batch_first and mha._qkv_same_embed_dim):
            raise UnsupportedLayout("unsupported attention layout (not batch-first, or separate q/k/v sizes)")
        self.heads = mha.num_heads
        self.qkv = PackedLinear(mha.in_proj_weight, mha.in_proj_bias)
        self.out = PackedLinear(mha.out_proj.weight, mha.out_proj.bias)

    def forward(self, q: torch.Tensor, k: Any = None, v: Any = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        b, n, d = q.shape
        qkv = self.qkv(q).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        return self.out(o.transpose(1, 2).reshape(b, n, d)), None


def pack_fp16(transformer: torch.nn.Module) -> torch.nn.Module:
    """A copy of an open_clip text `Transformer` with every block's linear layers packed."""
    cast = transformer.get_cast_dtype()
    fast = copy.deepcopy(transformer)
    for block in fast.resblocks:
        if not isinstance(block.attn, torch.nn.MultiheadAttention):
            raise UnsupportedLayout(f"unsupported block: attention is {type(block.attn).__name__}")
        block.attn = PackedAttention(block.attn)
        block.mlp.c_fc = PackedLinear(block.mlp.c_fc.weight, block.mlp.c_fc.bias)
        block.mlp.c_proj = PackedLinear(block.mlp.c_proj.weight, block.mlp.c_proj.bias)
    fast.get_cast_dtype = lambda: cast  # the packed layers have no .weight for open_clip to ask
    return fast.eval()
