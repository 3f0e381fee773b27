"""Context decoder: cross-attention from the keypoint prompts to the image (DenseCLIP style, Sec. 3.2.1).

Queries are the K prompt embeddings, memory the image tokens ``[global, HW dense]`` in the joint
space. The caller adds the output back with a learnable per-channel scale gamma (init 1e-3):
E_prompt = E_prompt^origin + gamma * ContextDecoder(E_prompt^origin, memory).
Architecture and init follow the official ``ContextDecoder`` (3 pre-norm layers, width 256, 4 heads).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class _Attention(nn.Module):
    """Multi-head attention with separate bias-free q/k/v projections and a biased output projection."""

    def __init__(self, dim: int, heads: int, proj_dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"ContextDecoder: width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, n, c = q.shape
        # Default SDPA scale is head_dim ** -0.5, as the official code; no attention dropout.
        out = F.scaled_dot_product_attention(
            self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        )
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class _DecoderLayer(nn.Module):
    """Pre-norm layer: self-attention, cross-attention to the (already normalised) memory, MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = _Attention(width, heads, dropout)
        self.cross_attn = _Attention(width, heads, dropout)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * 4), nn.GELU(), nn.Dropout(dropout), nn.Linear(width * 4, width)
        )

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        q = self.norm1(x)
        x = x + self.self_attn(q, q, q)
        x = x + self.cross_attn(self.norm2(x), memory, memory)
        return x + self.dropout(self.mlp(self.norm3(x)))


class ContextDecoder(nn.Module):
    """Transformer decoder adapting the prompt embeddings to one image (output in the joint space, C)."""

    def __init__(
        self,
        embed_dim: int,
        width: int = 256,
        heads: int = 4,
        layers: int = 3,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.memory_proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width), nn.LayerNorm(width))
        self.text_proj = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, width))
        self.decoder = nn.ModuleList([_DecoderLayer(width, heads, dropout) for _ in range(layers)])
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, prompts: Tensor, memory: Tensor) -> Tensor:
        """``prompts`` (B, K, C), ``memory`` (B, N, C) image tokens -> (B, K, C) prompt update."""
        memory = self.memory_proj(memory)
        x = self.text_proj(prompts)
        for layer in self.decoder:
            x = layer(x, memory)
        return self.out_proj(x)
