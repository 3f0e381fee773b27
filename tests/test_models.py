"""Models: tiny registered models end to end, text side, caching, frozen weights, factory, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from clamp.keypoints import AP10K, KeypointSpec
from clamp.lightning.optim import parameter_groups
from clamp.losses import clamp_total_loss
from clamp.models import CLAMP, SimpleBaseline, create_model, list_models, model_defaults
from clamp.models.clip_backbone import load_open_clip
from clamp.models.pose_models import presence_score_map
from clamp.models.text import FrozenTextEncoder, PromptLearner, tokenize_prompt_words

TINY_MODELS = [name for name in list_models() if "tiny" in name]
FULL_MODELS = [name for name in list_models() if "tiny" not in name]


def make_batch(model, batch_size: int = 2) -> dict[str, torch.Tensor]:
    """A sample-dict batch with random keypoints and MSRA-style targets at the heatmap and feature grids."""
    gen = torch.Generator().manual_seed(0)
    w, h = model.input_size
    hw, hh = model.heatmap_size
    gw, gh = w // model.feature_stride, h // model.feature_stride
    k = model.num_keypoints
    xy = torch.rand(batch_size, k, 2, generator=gen) * torch.tensor([w - 1, h - 1])
    vis = torch.full((batch_size, k, 1), 2.0)

    def gaussian(size: tuple[int, int], stride: float, sigma: float) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(size[1]), torch.arange(size[0]), indexing="ij")
        mu = (xy / stride + 0.5).floor()
        d2 = (xs - mu[..., 0, None, None]) ** 2 + (ys - mu[..., 1, None, None]) ** 2
        return torch.exp(-d2 / (2 * sigma**2))

    return {
        "image": torch.randn(batch_size, 3, h, w, generator=gen),
        "heatmap": gaussian((hw, hh), w / hw, 2.0),
        "target_weight": torch.ones(batch_size, k),
        "coarse_heatmap": gaussian((gw, gh), model.feature_stride, 0.5),
        "coarse_weight": torch.ones(batch_size, k),
        "keypoints": torch.cat([xy, vis], dim=-1),
    }


def training_loss(model, batch) -> dict[str, torch.Tensor]:
    is_clamp = isinstance(model, CLAMP)
    out = model(batch["image"])
    return clamp_total_loss(
        out,
        batch,
        alpha_spatial=0.4,
        alpha_feature=5e-4,
        use_spatial=is_clamp,
        use_feature=is_clamp,
        logit_scale=model.logit_scale if is_clamp else None,
    )


@pytest.fixture(scope="module")
def tiny_clamp() -> CLAMP:
    torch.manual_seed(0)
    return create_model("clamp_tiny_rn")


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_model_trains_and_every_trainable_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = create_model(name).train()
    batch = make_batch(model)
    losses = training_loss(model, batch)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"trainable parameters without a gradient: {missing}"
    opt = torch.optim.AdamW(parameter_groups(model, 1e-3, 1e-4, 1.0))
    opt.step()


@pytest.mark.parametrize("name", ["simplebaseline_tiny_rn", "simplebaseline_tiny_vit"])
def test_simplebaseline_keeps_the_clip_projector_frozen_and_unused(name):
    model = create_model(name)
    projector = model.image_encoder.projector_parameters()
    assert projector and not any(p.requires_grad for p in projector)
    with torch.no_grad():
        assert model(torch.randn(1, 3, *model.input_size[::-1])).score_maps is None


@pytest.mark.parametrize("name", TINY_MODELS)
def test_tiny_model_output_shapes(name):
    model = create_model(name).eval()
    k, (hw, hh), (w, h) = model.num_keypoints, model.heatmap_size, model.input_size
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w), return_aux=True)
    assert out.heatmaps.shape == (2, k, hh, hw)
    if isinstance(model, CLAMP):
        c = model.image_encoder.embed_dim
        gw, gh = w // model.feature_stride, h // model.feature_stride
        assert out.score_maps.shape == (2, k, gh, gw)
        assert out.spatial_heatmaps.shape == (2, k, hh, hw)
        assert out.dense_features.shape == (2, c, gh, gw)
        assert out.global_embedding.shape == (2, c)
        assert out.prompt_embeddings_initial.shape == out.prompt_embeddings.shape == (2, k, c)
        assert out.score_maps.abs().max() <= 1 + 1e-5  # raw cosine, no temperature
    else:
        assert out.score_maps is None and out.prompt_embeddings is None


def test_eval_without_aux_returns_heatmaps_only(tiny_clamp):
    tiny_clamp.eval()
    with torch.no_grad():
        out = tiny_clamp(torch.randn(1, 3, 64, 64))
    assert out.heatmaps.shape == (1, 17, 16, 16)
    assert out.spatial_heatmaps is None and out.dense_features is None


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_MODELS)
def test_full_size_model_output_shapes(name):
    model = create_model(name).eval()
    defaults = model_defaults(name)
    size = defaults["input_size"]
    assert model.input_size == (size, size) and model.heatmap_size == (64, 64)
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size), return_aux=True)
    assert out.heatmaps.shape == (1, 17, 64, 64)
    if isinstance(model, CLAMP):
        assert out.spatial_heatmaps.shape == (1, 17, 64, 64)
        grid = size // model.feature_stride
        assert out.score_maps.shape == (1, 17, grid, grid)
        width = model.text_encoder.width
        # CLIP's real text head count (the official ViT-L config wrongly used 8).
        assert model.text_encoder.transformer.resblocks[0].attn.num_heads == width // 64


def test_keypoint_head_deconvolutions_follow_grid_to_heatmap_ratio():
    rn, vit = create_model("simplebaseline_tiny_rn"), create_model("clamp_tiny_vit")
    deconvs = [
        sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.keypoint_head.modules()) for model in (rn, vit)
    ]
    assert deconvs == [3, 2]  # stride 32 -> 4 and 16 -> 4
    vit_upsampler = vit.spatial_head.upsampler
    assert vit_upsampler.final_layer.in_channels == 17  # official ViT upconv head: K filters per deconv


def test_frozen_text_encoder_unchanged_by_optimizer_step_while_contexts_change():
    torch.manual_seed(0)
    model = create_model("clamp_tiny_rn").train()
    frozen = {n: p.detach().clone() for n, p in model.text_encoder.named_parameters()}
    contexts = model.prompt_learner.contexts.detach().clone()
    groups = parameter_groups(model, 1e-2, 1e-2, 1.0)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert not grouped & {id(p) for p in model.text_encoder.parameters()}
    opt = torch.optim.AdamW(groups)
    training_loss(model, make_batch(model))["loss"].backward()
    opt.step()
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    assert all(torch.equal(frozen[n], p) for n, p in model.text_encoder.named_parameters())
    assert not torch.equal(contexts, model.prompt_learner.contexts)
    assert not model.text_encoder.training  # stays in eval mode under model.train()


def test_parameter_groups_cover_trainable_parameters_once_with_backbone_multiplier():
    model = create_model("clamp_tiny_vit")
    groups = {g["name"]: g for g in parameter_groups(model, 1e-3, 1e-4, 0.1)}
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert groups["backbone"]["lr"] == pytest.approx(1e-4)  # ViT multiplier 0.1
    assert groups["head"]["lr"] == 1e-3 and groups["head_no_decay"]["weight_decay"] == 0.0
    no_decay = {id(p) for p in groups["head_no_decay"]["params"]}
    assert id(model.context_decoder.decoder[0].norm1.weight) in no_decay
    assert id(model.keypoint_head.final_layer.bias) in no_decay
    assert id(model.prompt_encoder.block.attn.in_proj_bias) in no_decay
    assert id(model.gamma) not in no_decay


class _CallCounter:
    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self)

    def __call__(self, *args) -> None:
        self.calls += 1


def test_text_embeddings_cached_in_eval_until_contexts_change_or_mode_switch():
    model = create_model("clamp_tiny_rn").eval()
    counter = _CallCounter(model.text_encoder.transformer)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = model(images, return_aux=True).prompt_embeddings_initial
        again = model(images, return_aux=True).prompt_embeddings_initial
        assert counter.calls == 1 and torch.equal(first, again)
        model.prompt_learner.contexts.add_(0.5)
        changed = model(images, return_aux=True).prompt_embeddings_initial
        assert counter.calls == 2 and not torch.equal(first, changed)
        model.train().eval()
        model(images)
        assert counter.calls == 3


def test_text_cache_invalidated_by_adamw_step():
    model = create_model("clamp_tiny_rn").eval()
    counter = _CallCounter(model.text_encoder.transformer)
    contexts = model.prompt_learner.contexts
    opt = torch.optim.AdamW([contexts], lr=1e-2)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(images, return_aux=True).prompt_embeddings_initial
    contexts.grad = torch.randn_like(contexts)  # no forward in between: only the in-place update can tell
    opt.step()
    with torch.no_grad():
        after = model(images, return_aux=True).prompt_embeddings_initial
        model(images)
    assert counter.calls == 2 and not torch.equal(before, after)


def test_text_embeddings_in_training_recomputed_only_when_needed():
    model = create_model("clamp_tiny_rn").train()
    counter = _CallCounter(model.text_encoder.transformer)
    batch = make_batch(model)
    # Trainable contexts: each step needs its own graph, and two backward passes in a row work.
    for _ in range(2):
        training_loss(model, batch)["loss"].backward()
    assert counter.calls == 2 and model.prompt_learner.contexts.grad is not None
    # Frozen contexts (unchanged between steps): computed once and reused.
    model.prompt_learner.contexts.requires_grad_(False)
    for _ in range(2):
        training_loss(model, batch)["loss"].backward()
    assert counter.calls == 3


def test_frozen_text_encoder_matches_clip_encode_text_on_the_same_tokens():
    torch.manual_seed(0)
    clip = load_open_clip("tiny-rn", None, image_size=64).eval()
    encoder = FrozenTextEncoder(clip)
    learner = PromptLearner(["nose", "left front paw"], encoder.width)
    # Use the embeddings of 8 real tokens as the context; the result must equal CLIP on the full sentence.
    ctx_ids = tokenize_prompt_words(["a photo of the body part that is called"], 13)[0, 1:9]
    assert (ctx_ids < 49406).all()  # eight real word tokens, no SOT/EOT
    with torch.no_grad():
        learner.contexts.copy_(clip.token_embedding(ctx_ids)[None])
        ours = encoder(learner.name_tokens, learner.contexts)
        names = learner.name_tokens
        full = torch.zeros(2, 77, dtype=torch.long)
        full[:, :1], full[:, 1:9], full[:, 9:13] = names[:, :1], ctx_ids, names[:, 1:]
        reference = clip.encode_text(full)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_prompt_layout_and_context_init():
    learner = PromptLearner(AP10K.prompt_words, token_dim=64)
    assert learner.contexts.shape == (1, 8, 64) and learner.name_tokens.shape == (17, 5)
    assert (learner.name_tokens[:, 0] == 49406).all()  # SOT first; EOT is the largest id of each row
    assert (learner.name_tokens.max(dim=1).values == 49407).all()
    # trunc_normal(std 1, cut at +-2)
    assert learner.contexts.abs().max() <= 2 and 0.7 < learner.contexts.std() < 1.1


def test_too_long_prompt_word_raises_naming_word_and_limit():
    with pytest.raises(ValueError, match=r"'left front upper paw tip' is 5 BPE tokens long, but at most 3"):
        tokenize_prompt_words(["nose", "left front upper paw tip"], 5)


def test_custom_keypoint_spec_sets_number_of_prompts_and_heatmaps():
    spec = KeypointSpec(
        name="tri",
        keypoint_names=("a", "b", "c"),
        prompt_words=("nose", "tail", "neck"),
        flip_pairs=(),
        sigmas=(0.05,) * 3,
        skeleton=((0, 1),),
        upper_body_ids=(0,),
    )
    model = create_model("clamp_tiny_vit", keypoints=spec.to_dict()).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).heatmaps.shape == (1, 3, 16, 16)


def test_learned_matrix_variant_has_no_text_encoder_and_trains_the_matrix():
    model = create_model("clamp_tiny_vit", prompt_source="learned_matrix").train()
    assert model.text_encoder is None and model.prompt_learner is None
    training_loss(model, make_batch(model))["loss"].backward()
    assert model.prompt_matrix.embeddings.grad is not None


def test_prompt_encoder_off_and_bilinear_spatial_variants():
    model = create_model("clamp_tiny_rn", use_prompt_encoder=False, spatial_upsample="bilinear").train()
    assert model.prompt_encoder is None and not list(model.spatial_head.parameters())
    out = model(torch.randn(2, 3, 64, 64))
    assert out.spatial_heatmaps.shape == (2, 17, 16, 16)
    torch.testing.assert_close(out.spatial_heatmaps.mean(), out.score_maps.mean(), atol=0.05, rtol=0)


def test_context_decoder_update_is_scaled_by_gamma(tiny_clamp):
    assert torch.allclose(tiny_clamp.gamma, torch.full_like(tiny_clamp.gamma, 1e-3))
    tiny_clamp.eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = tiny_clamp(images, return_aux=True)
        gamma = tiny_clamp.gamma.clone()
        tiny_clamp.gamma.zero_()
        unadapted = tiny_clamp(images, return_aux=True)
        tiny_clamp.gamma.copy_(gamma)
    assert torch.equal(unadapted.prompt_embeddings, unadapted.prompt_embeddings_initial)
    assert not torch.equal(out.prompt_embeddings, out.prompt_embeddings_initial)
    assert tiny_clamp.logit_scale.item() == pytest.approx(math.log(1 / 0.07))


def test_presence_score_map_is_cosine_similarity():
    dense = torch.tensor([[3.0, 0.0], [4.0, 2.0]]).reshape(1, 2, 1, 2)  # vectors (3, 4) and (0, 2)
    prompts = torch.tensor([[[1.0, 0.0], [0.0, 5.0]]])
    expected = torch.tensor([[0.6, 0.0], [0.8, 1.0]]).reshape(1, 2, 1, 2)
    torch.testing.assert_close(presence_score_map(dense, prompts), expected)


def test_wrong_input_size_raises_clear_error(tiny_clamp):
    with pytest.raises(ValueError, match=r"shape \(B, 3, 64, 64\).*got \(1, 3, 32, 32\)"):
        tiny_clamp(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"got \(1, 1, 64, 64\)"):
        tiny_clamp(torch.randn(1, 1, 64, 64))


def test_create_model_unknown_name_lists_models():
    with pytest.raises(ValueError, match=r"Unknown model 'clamp_rn101'.*clamp_rn50.*simplebaseline_vitb16"):
        create_model("clamp_rn101")


def test_create_model_unknown_option_lists_valid_options():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['use_prompt_encoder'\].*valid options"):
        create_model("simplebaseline_tiny_rn", use_prompt_encoder=False)


def test_config_rebuilds_the_same_model():
    model = create_model("clamp_tiny_vit", keypoints="animalpose", use_prompt_encoder=False).eval()
    rebuilt = create_model(**model.config).eval()
    rebuilt.load_state_dict(model.state_dict())
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images).heatmaps, model(images).heatmaps)
    assert rebuilt.keypoint_spec.name == "animalpose" and rebuilt.prompt_encoder is None


def test_model_defaults_follow_official_configs():
    rn, vitb, vitl = (model_defaults(n) for n in ("clamp_rn50", "clamp_vitb16", "clamp_vitl14"))
    assert (rn["input_size"], vitl["input_size"], vitl["heatmap_size"]) == (256, 224, 64)
    assert set(rn) == {"kind", "backbone", "input_size", "heatmap_size"}  # architecture only
    assert isinstance(create_model("simplebaseline_tiny_vit"), SimpleBaseline)


@pytest.mark.parametrize(
    ("backbone", "alpha_spatial", "lr_mult"), [("rn50", 0.4, 1.0), ("vitb16", 2.0, 0.1), ("vitl14", 1.0, 0.1)]
)
def test_training_defaults_per_backbone_follow_official_configs(backbone, alpha_spatial, lr_mult):
    from tests.helpers import compose_train

    cfg = compose_train([f"backbone={backbone}"])
    assert (cfg.loss.alpha_spatial, cfg.loss.alpha_feature) == (alpha_spatial, 5e-4)
    assert cfg.optimizer.backbone_lr_mult == lr_mult and cfg.model.name == f"clamp_{backbone}"
