"""CLAMP and SimpleBaseline top-down pose models, and their common output type.

CLAMP forward (paper Sec. 3.2, official ``CLAMP.spatial_adapt``): image encoder -> F_origin, dense F and
the global embedding; prompt learner -> frozen text encoder -> prompt encoder = E_prompt^origin (K, C);
context decoder: E_prompt = E_prompt^origin + gamma * decoder(E_prompt^origin, [global, F]); score map
S = cos(F, E_prompt) (Eq. 3-4); F_fuse = F_origin (+) S (Eq. 9) -> keypoint head -> heatmaps; the spatial
head upsamples S for L_spatial (Eq. 5).

Parameter name prefixes, which the trainer's optimiser groups use (``clamp.lightning.optim``):
``image_encoder`` (the backbone, projector included), ``text_encoder`` (frozen, requires_grad False),
``prompt_learner`` / ``prompt_matrix``, ``prompt_encoder``, ``context_decoder``, ``keypoint_head``,
``spatial_head``, ``gamma``, ``logit_scale``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clamp.keypoints import KeypointSpec
from clamp.models.context_decoder import ContextDecoder
from clamp.models.heads import HeatmapHead, SpatialHead, num_upsampling_layers
from clamp.models.text import (
    CONTEXT_LENGTH,
    NUM_CONTEXT,
    FrozenTextEncoder,
    LearnedPromptMatrix,
    PromptEncoder,
    PromptLearner,
    tokenize_prompt_words,
)

PROMPT_SOURCES = ("text", "learned_matrix")


@dataclass
class PoseOutput:
    """Model output. ``heatmaps`` always; the rest when ``return_aux`` or training (CLAMP only).

    heatmaps (B, K, Hh, Wh); score_maps (B, K, h, w) raw cosine S; spatial_heatmaps (B, K, Hh, Wh)
    Upsample(S); dense_features (B, C, h, w) F in the joint space; global_embedding (B, C);
    prompt_embeddings_initial (B, K, C) E_prompt^origin (text + prompt encoder); prompt_embeddings
    (B, K, C) E_prompt after the context decoder.
    """

    heatmaps: Tensor
    score_maps: Tensor | None = None
    spatial_heatmaps: Tensor | None = None
    dense_features: Tensor | None = None
    global_embedding: Tensor | None = None
    prompt_embeddings_initial: Tensor | None = None
    prompt_embeddings: Tensor | None = None


def presence_score_map(dense_features: Tensor, prompt_embeddings: Tensor) -> Tensor:
    """Eq. 3-4: S_ijn = F_ij . E_prompt^n on L2-normalised vectors (raw cosine, no temperature).

    ``dense_features`` (B, C, h, w), ``prompt_embeddings`` (B, K, C) -> S (B, K, h, w).
    """
    dense = F.normalize(dense_features, dim=1)
    prompts = F.normalize(prompt_embeddings, dim=-1).to(dense.dtype)
    return torch.einsum("bchw,bkc->bkhw", dense, prompts)


def fuse_features(features: Tensor, score_maps: Tensor) -> Tensor:
    """Eq. 9: F_fuse = F_origin (+) S, concatenation along channels -> (B, C_feat + K, h, w)."""
    return torch.cat([features, score_maps.to(features.dtype)], dim=1)


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    w, h = size
    return int(w), int(h)


class PoseModel(nn.Module):
    """Shared parts of the pose models: geometry, input checks, optimiser parameter groups.

    Attributes: ``keypoint_spec``, ``input_size`` (W, H), ``heatmap_size`` (W, H), ``feature_stride``
    (input px per feature cell), ``config`` (the ``create_model`` kwargs that rebuild the model, set by
    the factory; ``None`` for models built by hand). :meth:`no_weight_decay` names the parameters that
    take no weight decay.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        keypoint_spec: KeypointSpec,
        input_size: int | tuple[int, int],
        heatmap_size: int | tuple[int, int],
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.keypoint_spec = keypoint_spec
        self.input_size = _pair(input_size)
        self.heatmap_size = _pair(heatmap_size)
        self.feature_stride = int(image_encoder.stride)
        if any(s % self.feature_stride for s in self.input_size):
            raise ValueError(
                f"input_size {self.input_size} must be a multiple of the image encoder stride {self.feature_stride}"
            )
        self.grid_size = (self.input_size[0] // self.feature_stride, self.input_size[1] // self.feature_stride)
        self.config: dict[str, Any] | None = None

    @property
    def num_keypoints(self) -> int:
        return self.keypoint_spec.num_keypoints

    def _num_deconv(self, num_deconv: int | None) -> int:
        """Stride-2 deconvolutions from the feature grid to the heatmap (derived when ``None``), checked."""
        n = num_upsampling_layers(self.grid_size, self.heatmap_size) if num_deconv is None else num_deconv
        out = (self.grid_size[0] * 2**n, self.grid_size[1] * 2**n)
        if out != self.heatmap_size:
            raise ValueError(
                f"{n} deconvolutions take the {self.grid_size} feature grid to {out}, "
                f"not the heatmap size {self.heatmap_size}"
            )
        return n

    def _check_images(self, images: Any) -> None:
        w, h = self.input_size
        if (
            not isinstance(images, Tensor)
            or images.ndim != 4
            or images.shape[1] != 3
            or tuple(images.shape[-2:]) != (h, w)
            or not images.is_floating_point()
        ):
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(
                f"{type(self).__name__} expects float images of shape (B, 3, {h}, {w}) (model.input_size "
                f"= {w}x{h}), got {got}. Crop and resize inputs to the model input size."
            )

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters that take no weight decay: every normalisation layer's and every bias."""
        norm_types = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
        names = {
            f"{module_name}.{name}".lstrip(".")
            for module_name, module in self.named_modules()
            if isinstance(module, norm_types)
            for name, _ in module.named_parameters(recurse=False)
        }
        # endswith("bias") also catches nn.MultiheadAttention's in_proj_bias.
        return names | {name for name, _ in self.named_parameters() if name.endswith("bias")}


class CLAMP(PoseModel):
    """CLAMP (paper Sec. 3.2). See the module docstring for the data flow and parameter names.

    Args:
        image_encoder: a dense CLIP encoder (``DenseCLIPResNet`` / ``DenseCLIPViT``) returning F_origin,
            F and the global embedding.
        keypoint_spec: keypoints and their prompt words.
        text_encoder: the frozen CLIP text encoder; ``None`` only with ``prompt_source="learned_matrix"``.
        input_size, heatmap_size: (W, H) or an int for square.
        prompt_source: ``"text"`` (Eq. 2 prompts through the text encoder) or ``"learned_matrix"`` (Table 8:
            a trainable K x C matrix in place of the text-encoded prompts).
        num_context, context_length: learned context tokens k (8) and total text length (13).
        use_prompt_encoder: Table 6 switch for the prompt encoder.
        num_deconv: keypoint-head deconvolutions; default from feature grid -> heatmap size.
        spatial_upsample: ``"learned"`` (official upconv head) or ``"bilinear"`` (paper wording).
        spatial_deconv_channels: channels of the learned upsampler's deconvs (official: 256 for RN50,
            K for ViT); ``None`` = K.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        keypoint_spec: KeypointSpec,
        *,
        text_encoder: FrozenTextEncoder | None,
        input_size: int | tuple[int, int],
        heatmap_size: int | tuple[int, int],
        prompt_source: str = "text",
        num_context: int = NUM_CONTEXT,
        context_length: int = CONTEXT_LENGTH,
        use_prompt_encoder: bool = True,
        prompt_encoder_heads: int = 8,
        decoder_width: int = 256,
        decoder_heads: int = 4,
        decoder_layers: int = 3,
        decoder_dropout: float = 0.1,
        gamma_init: float = 1e-3,
        num_deconv: int | None = None,
        deconv_channels: int = 256,
        spatial_upsample: str = "learned",
        spatial_deconv_channels: int | None = None,
        logit_scale_init: float = math.log(1 / 0.07),
    ) -> None:
        super().__init__(image_encoder, keypoint_spec, input_size, heatmap_size)
        embed_dim = image_encoder.embed_dim
        if embed_dim is None:
            raise ValueError(
                f"CLAMP needs an image encoder with a joint-space projector; "
                f"{type(image_encoder).__name__} has none (use SimpleBaseline)"
            )
        if prompt_source not in PROMPT_SOURCES:
            raise ValueError(f"prompt_source must be one of {PROMPT_SOURCES}, got '{prompt_source}'")
        k = self.num_keypoints
        self.text_encoder: FrozenTextEncoder | None = None
        self.prompt_learner: PromptLearner | None = None
        self.prompt_matrix: LearnedPromptMatrix | None = None
        if prompt_source == "text":
            if text_encoder is None:
                raise ValueError("prompt_source='text' needs a text_encoder")
            if text_encoder.embed_dim != embed_dim:
                raise ValueError(f"text embedding dim {text_encoder.embed_dim} != image embedding dim {embed_dim}")
            if text_encoder.context_length != context_length:
                raise ValueError(f"text encoder context length {text_encoder.context_length} != {context_length}")
            self.text_encoder = text_encoder
            self.prompt_learner = PromptLearner(
                keypoint_spec.prompt_words, text_encoder.width, num_context, context_length
            )
        else:
            self.prompt_matrix = LearnedPromptMatrix(k, embed_dim)
        self.prompt_encoder = PromptEncoder(embed_dim, prompt_encoder_heads) if use_prompt_encoder else None
        self.context_decoder = ContextDecoder(embed_dim, decoder_width, decoder_heads, decoder_layers, decoder_dropout)
        self.gamma = nn.Parameter(torch.full((embed_dim,), gamma_init))
        # Learnable, unclamped, used only by L_feature (official).
        self.logit_scale = nn.Parameter(torch.tensor(logit_scale_init))
        n_up = self._num_deconv(num_deconv)
        self.keypoint_head = HeatmapHead(image_encoder.feature_channels + k, k, n_up, deconv_channels)
        self.spatial_head = SpatialHead(
            k,
            self.heatmap_size,
            spatial_upsample,
            n_up,
            k if spatial_deconv_channels is None else spatial_deconv_channels,
        )

    def initial_prompt_embeddings(self) -> Tensor:
        """E_prompt^origin (K, C): text-encoded prompts (cached when no grad is needed), prompt encoder."""
        if self.prompt_matrix is not None:
            prompts = self.prompt_matrix()
        else:
            prompts = self.text_encoder(self.prompt_learner.name_tokens, self.prompt_learner.contexts)
        if self.prompt_encoder is not None:
            prompts = self.prompt_encoder(prompts.unsqueeze(0)).squeeze(0)
        return prompts

    def adapt_prompts(self, prompts: Tensor, global_embedding: Tensor, dense_features: Tensor) -> Tensor:
        """E_prompt = E_prompt^origin + gamma * ContextDecoder(E_prompt^origin, [global; dense tokens])."""
        memory = torch.cat([global_embedding.unsqueeze(1), dense_features.flatten(2).transpose(1, 2)], dim=1)
        return prompts + self.gamma * self.context_decoder(prompts, memory)

    def forward(self, images: Tensor, return_aux: bool = False) -> PoseOutput:
        """Images (B, 3, H, W) at ``input_size`` -> :class:`PoseOutput`."""
        self._check_images(images)
        feats = self.image_encoder(images)
        initial = self.initial_prompt_embeddings().unsqueeze(0).expand(images.shape[0], -1, -1)
        prompts = self.adapt_prompts(initial, feats.global_embedding, feats.dense)
        score_maps = presence_score_map(feats.dense, prompts)
        heatmaps = self.keypoint_head(fuse_features(feats.features, score_maps))
        if not (return_aux or self.training):
            return PoseOutput(heatmaps=heatmaps)
        return PoseOutput(
            heatmaps=heatmaps,
            score_maps=score_maps,
            spatial_heatmaps=self.spatial_head(score_maps),
            dense_features=feats.dense,
            global_embedding=feats.global_embedding,
            prompt_embeddings_initial=initial,
            prompt_embeddings=prompts,
        )

    def named_score_maps(self, images: Tensor, prompt_words: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Eq. 3-4 score maps (B, M, h, w) of any M prompt words, and the trained keypoint each stood in for (M,).

        The prompt has no per-keypoint learned part (the k context vectors are shared), so a new word goes
        through the text encoder as the trained words do. The prompt encoder and the context decoder attend
        across the K prompts, so each word is put in the trained set in the place of its nearest trained
        keypoint (the highest cosine of the text-encoder embeddings, before the prompt encoder) and that set
        of K runs as in training; a trained keypoint's own word gives exactly its map of :meth:`forward`.
        The heatmap head's channels are fixed, so these maps are the coarse feature-grid ones only.
        """
        if self.prompt_learner is None or self.text_encoder is None:
            raise ValueError("named score maps need text prompts (prompt_source='text'), not a learned matrix")
        self._check_images(images)
        name_tokens, contexts = self.prompt_learner.name_tokens, self.prompt_learner.contexts
        words = tokenize_prompt_words(prompt_words, name_tokens.shape[1]).to(name_tokens.device)
        trained = self.text_encoder(name_tokens, contexts)
        new = self.text_encoder(words, contexts)
        nearest = (F.normalize(new.float(), dim=-1) @ F.normalize(trained.float(), dim=-1).T).argmax(dim=1)
        m, k = len(prompt_words), self.num_keypoints
        sets = trained.unsqueeze(0).repeat(m, 1, 1)
        sets[torch.arange(m), nearest] = new.to(sets.dtype)
        if self.prompt_encoder is not None:
            sets = self.prompt_encoder(sets)
        feats = self.image_encoder(images)
        b = images.shape[0]
        # Every image with every set: (B * M) rows through the context decoder, as forward's B rows.
        adapted = self.adapt_prompts(
            sets.repeat(b, 1, 1),
            feats.global_embedding.repeat_interleave(m, dim=0),
            feats.dense.repeat_interleave(m, dim=0),
        ).reshape(b, m, k, -1)
        chosen = adapted[:, torch.arange(m), nearest]
        return presence_score_map(feats.dense, chosen), nearest


class SimpleBaseline(PoseModel):
    """SimpleBaseline (Xiao et al. 2018): image encoder F_origin -> deconv keypoint head, no language side.

    With a CLIP encoder, the encoder's joint-space projector (RN: attention pool; ViT: ln_post, proj) is
    kept (the paper's Table 7 counts it) but never run, and frozen so that optimisers and DDP skip it.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        keypoint_spec: KeypointSpec,
        *,
        input_size: int | tuple[int, int],
        heatmap_size: int | tuple[int, int],
        num_deconv: int | None = None,
        deconv_channels: int = 256,
    ) -> None:
        super().__init__(image_encoder, keypoint_spec, input_size, heatmap_size)
        n_up = self._num_deconv(num_deconv)
        self.keypoint_head = HeatmapHead(image_encoder.feature_channels, self.num_keypoints, n_up, deconv_channels)
        for param in image_encoder.projector_parameters():
            param.requires_grad_(False)

    def forward(self, images: Tensor, return_aux: bool = False) -> PoseOutput:
        """Images (B, 3, H, W) at ``input_size`` -> :class:`PoseOutput` with heatmaps only."""
        self._check_images(images)
        return PoseOutput(heatmaps=self.keypoint_head(self.image_encoder(images, project=False).features))
