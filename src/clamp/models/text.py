"""Text side of CLAMP: pose-specific prompts (Eq. 2), the frozen CLIP text encoder, the prompt encoder.

A keypoint prompt is the token sequence ``[SOT][T]_1..[T]_k[KeyPoint]_n[EOT][pad]`` (Eq. 2) of total
length 13, with k = 8 learnable context vectors shared by all keypoints (CoOp-style prefix, no
template text), exactly as the official ``CLIPTextContextEncoder``. The frozen text encoder maps the
K prompts to E_prompt^origin (K, C); the prompt encoder (one transformer layer without positional
embedding) then lets the K prompts attend to each other.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import open_clip
import torch
from open_clip.transformer import LayerNorm, QuickGELU, ResidualAttentionBlock
from torch import Tensor, nn

CONTEXT_LENGTH = 13
NUM_CONTEXT = 8


@functools.lru_cache(maxsize=1)
def _clip_tokenizer() -> open_clip.tokenizer.SimpleTokenizer:
    return open_clip.tokenizer.SimpleTokenizer()


def tokenize_prompt_words(prompt_words: Sequence[str], name_length: int) -> Tensor:
    """Tokenise keypoint prompt words as ``[SOT] tokens [EOT] 0...`` rows of length ``name_length``.

    Uses open_clip's CLIP BPE tokenizer (vocabulary shipped in the wheel, no network). Unlike
    ``SimpleTokenizer.__call__``, which silently truncates, a word that does not fit raises.
    """
    tokenizer = _clip_tokenizer()
    rows = []
    for word in prompt_words:
        ids = [tokenizer.sot_token_id, *tokenizer.encode(word), tokenizer.eot_token_id]
        if len(ids) > name_length:
            raise ValueError(
                f"Keypoint prompt word '{word}' is {len(ids) - 2} BPE tokens long, but at most "
                f"{name_length - 2} fit (the {name_length} token slots left after the learned context hold "
                "SOT + name + EOT). Use a shorter word in KeypointSpec.prompt_words, or a smaller "
                "num_context / larger context_length."
            )
        rows.append(ids + [0] * (name_length - len(ids)))
    return torch.tensor(rows, dtype=torch.long)


class PromptLearner(nn.Module):
    """The learnable prompt template of Eq. 2: k context vectors shared by all keypoints.

    Holds ``contexts`` (1, k, token_dim) and the tokenised keypoint names ``name_tokens``
    (K, context_length - k). Init as DenseCLIP/CLAMP: truncated normal, std 1, cut at +-2.
    """

    def __init__(
        self,
        prompt_words: Sequence[str],
        token_dim: int,
        num_context: int = NUM_CONTEXT,
        context_length: int = CONTEXT_LENGTH,
    ) -> None:
        super().__init__()
        if not 0 < num_context <= context_length - 3:
            raise ValueError(
                f"num_context={num_context} must be in 1..{context_length - 3} for "
                f"context_length={context_length} (SOT, at least one name token and EOT must fit)"
            )
        self.num_context = num_context
        self.context_length = context_length
        self.contexts = nn.Parameter(torch.empty(1, num_context, token_dim))
        nn.init.trunc_normal_(self.contexts, std=1.0)
        # Derived from the prompt words (kept in the model config), so not stored in checkpoints.
        self.register_buffer(
            "name_tokens", tokenize_prompt_words(prompt_words, context_length - num_context), persistent=False
        )

    @property
    def num_keypoints(self) -> int:
        return self.name_tokens.shape[0]


class LearnedPromptMatrix(nn.Module):
    """Table 8 ablation: a trainable K x C matrix in place of the text-encoded prompts (no CLIP text)."""

    def __init__(self, num_keypoints: int, embed_dim: int) -> None:
        super().__init__()
        # CLIP's own init scale for its text projection: rows of roughly unit norm.
        self.embeddings = nn.Parameter(torch.randn(num_keypoints, embed_dim) * embed_dim**-0.5)

    def forward(self) -> Tensor:
        """Return the (K, C) prompt embeddings."""
        return self.embeddings


class FrozenTextEncoder(nn.Module):
    """CLIP's text transformer, run on ``[SOT][ctx x k][name][EOT]`` sequences of length 13.

    Takes CLIP's token embedding, transformer (with its real number of heads: the official ViT-L
    config wrongly used 8), ln_final and text projection, and the first ``context_length`` rows of
    its positional embedding, with a causal mask of that size. All weights are frozen and the module
    stays in eval mode; gradients still flow through it to the context vectors.

    Caching (the paper's "stored offline"): when no graph is needed (no grad mode, or context vectors
    that do not require grad) the output is cached and reused until the context vectors change
    (tracked by their storage pointer and in-place version counter), ``train()``/``eval()`` is called,
    or a state dict is loaded. When a graph is needed it is recomputed every forward, because a
    cached graph would be freed by the first backward pass; this costs one K-sequence text forward
    per training step, independent of the batch size.
    """

    def __init__(self, clip_model: nn.Module, context_length: int = CONTEXT_LENGTH) -> None:
        """Take the text tower of ``clip_model``: an open_clip ``CLIP``, ``CustomTextCLIP`` or ``TextTransformer``."""
        super().__init__()
        if isinstance(getattr(clip_model, "text", None), nn.Module):  # CustomTextCLIP keeps it in .text
            clip_model = clip_model.text
        pool_type = getattr(clip_model, "text_pool_type", getattr(clip_model, "pool_type", "argmax"))
        if pool_type != "argmax" or getattr(clip_model, "cls_emb", None) is not None:
            raise ValueError(
                f"FrozenTextEncoder needs a CLIP text tower pooled at the EOT token (argmax), "
                f"got pool_type='{pool_type}'"
            )
        if clip_model.positional_embedding.shape[0] < context_length:
            raise ValueError(
                f"CLIP text context length {clip_model.positional_embedding.shape[0]} is shorter than the "
                f"prompt context length {context_length}"
            )
        self.context_length = context_length
        self.token_embedding = clip_model.token_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.positional_embedding = nn.Parameter(
            clip_model.positional_embedding[:context_length].detach().clone(), requires_grad=False
        )
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)
        self.requires_grad_(False)
        self._cache: tuple[tuple[Any, ...], Tensor] | None = None
        self.register_load_state_dict_post_hook(lambda module, incompatible_keys: module.clear_cache())
        super().train(False)

    @property
    def width(self) -> int:
        return self.token_embedding.embedding_dim

    @property
    def embed_dim(self) -> int:
        proj = self.text_projection
        if proj is None:
            return self.width
        return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        """Stay in eval mode (no dropout in a frozen encoder); any mode switch drops the cache."""
        self.clear_cache()
        return super().train(False)

    def clear_cache(self) -> None:
        self._cache = None

    def forward(self, name_tokens: Tensor, contexts: Tensor) -> Tensor:
        """Encode K prompts: ``name_tokens`` (K, L) with ``contexts`` (1, k, width) -> (K, embed_dim)."""
        if name_tokens.shape[1] + contexts.shape[1] != self.context_length:
            raise ValueError(
                f"{name_tokens.shape[1]} name tokens + {contexts.shape[1]} context vectors != text context "
                f"length {self.context_length}"
            )
        needs_graph = torch.is_grad_enabled() and contexts.requires_grad
        key = self._cache_key(name_tokens, contexts)
        if not needs_graph and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        text = self._encode(name_tokens, contexts)
        self._cache = None if needs_graph else (key, text)
        return text

    @staticmethod
    def _cache_key(name_tokens: Tensor, contexts: Tensor) -> tuple[Any, ...]:
        device_type = contexts.device.type
        autocast = torch.is_autocast_enabled(device_type)
        return (
            contexts.data_ptr(),
            contexts._version,
            contexts.dtype,
            contexts.device,
            name_tokens.data_ptr(),
            name_tokens._version,
            autocast,
            torch.get_autocast_dtype(device_type) if autocast else None,
            torch.is_inference_mode_enabled(),
        )

    def _encode(self, name_tokens: Tensor, contexts: Tensor) -> Tensor:
        num_prompts = name_tokens.shape[0]
        cast_dtype = self.transformer.get_cast_dtype()
        names = self.token_embedding(name_tokens).to(cast_dtype)
        ctx = contexts.to(cast_dtype).expand(num_prompts, -1, -1)
        # CoOp-style prefix: the context goes right after SOT.
        x = torch.cat([names[:, :1], ctx, names[:, 1:]], dim=1)
        x = x + self.positional_embedding.to(cast_dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        # EOT has the largest token id; its position moves right by the context length.
        eot = name_tokens.argmax(dim=-1) + contexts.shape[1]
        x = x[torch.arange(num_prompts, device=x.device), eot]
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        if self.text_projection is not None:
            return x @ self.text_projection
        return x


class PromptEncoder(nn.Module):
    """One CLIP-style transformer layer over the K prompt embeddings, then a LayerNorm (Sec. 3.2.1).

    Pre-LN residual attention block with ``nn.MultiheadAttention`` (8 heads), 4x QuickGELU MLP, no
    mask and no positional embedding, so it models relations among keypoint prompts. The official
    module also allocated an uninitialised positional embedding and text projection it never used;
    they are left out here.
    """

    def __init__(self, embed_dim: int, heads: int = 8) -> None:
        super().__init__()
        if embed_dim % heads:
            raise ValueError(f"PromptEncoder: embed_dim {embed_dim} is not divisible by heads={heads}")
        self.block = ResidualAttentionBlock(
            embed_dim, heads, mlp_ratio=4.0, act_layer=QuickGELU, norm_layer=LayerNorm, batch_first=True
        )
        self.ln_final = LayerNorm(embed_dim)

    def forward(self, prompts: Tensor) -> Tensor:
        """(B, K, C) -> (B, K, C)."""
        return self.ln_final(self.block(prompts))
