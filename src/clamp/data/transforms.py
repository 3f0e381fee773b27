"""Top-down crop geometry and training augmentations (mmpose 0.x semantics, one affine warp).

Conventions (shared by the whole package): pixel index ``i`` has coordinate ``i``; a horizontal
flip maps ``x -> W - 1 - x``; a crop is described by ``center`` (2,) and ``scale`` (2,) = the
crop box size ``(w, h)`` in original-image pixels, already padded and made to the input aspect
ratio (no ``/200`` units); ``rotation`` is in degrees.

The training pipeline mirrors the official CLAMP / mmpose 0.x one (``TopDownRandomFlip``,
``TopDownHalfBodyTransform``, ``TopDownGetRandomScaleRotation``, ``TopDownAffine``): the flip,
half-body box, scale and rotation are all folded into a single affine matrix, so the image is
resampled once (bilinear) from the original pixels. Keypoints go through the same matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from clamp.keypoints import KeypointSpec, get_keypoint_spec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# mmpose's padding of a box before it is cut out (``_xywh2cs``: scale * 1.25).
BOX_PADDING = 1.25
# Normalisation in 0-255 units, float32: the same constants on the CPU and (uint8 batches) on the device.
_MEAN_255 = np.array(IMAGENET_MEAN, dtype=np.float32) * 255.0
_INV_STD_255 = 1.0 / (np.array(IMAGENET_STD, dtype=np.float32) * 255.0)


def normalize_uint8_images(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 RGB -> float32 ImageNet-normalised, on the images' device: the same float32
    operations as :class:`TopDownTransform` on the CPU, so the result is bit-identical to its output."""
    mean = torch.from_numpy(_MEAN_255).to(images.device).view(1, 3, 1, 1)
    inv_std = torch.from_numpy(_INV_STD_255).to(images.device).view(1, 3, 1, 1)
    return (images.float() - mean) * inv_std


def box_to_center_scale(
    bbox_xywh: Sequence[float], aspect_ratio: float, padding: float = BOX_PADDING
) -> tuple[np.ndarray, np.ndarray]:
    """Box centre and crop size: the box widened or heightened to ``aspect_ratio`` (w/h), times ``padding``.

    Same as mmpose 0.x ``_xywh2cs`` without the ``/200`` unit and without the training centre
    jitter (that one lives in :class:`clamp.data.dataset.TopDownDataset`).
    """
    x, y, w, h = (float(v) for v in bbox_xywh)
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w, h], dtype=np.float32) * padding
    return center, scale


def get_affine_transform(
    center: Sequence[float],
    scale: Sequence[float],
    rotation_deg: float,
    output_size: Sequence[int],
    inverse: bool = False,
) -> np.ndarray:
    """(2, 3) matrix mapping the crop in the original image onto the ``output_size`` (W, H) input.

    mmpose 0.x convention: ``center`` goes to ``(W/2, H/2)``, the image is rotated by
    ``rotation_deg`` about ``center`` (positive = counter-clockwise on screen, the same sign as
    mmpose), and ``scale[0]`` original pixels map to ``W`` output pixels (isotropic; ``scale[1]``
    follows from the aspect ratio). Written in closed form instead of mmpose's three-point
    ``cv2.getAffineTransform`` so it stays exact in float64; ``inverse=True`` maps input-crop
    coordinates back to the original image.
    """
    s = float(output_size[0]) / float(scale[0])
    theta = np.deg2rad(rotation_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # mmpose rotates the source direction by +theta, so points are mapped by R(-theta).
    linear = s * np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    dst_center = np.array([output_size[0] * 0.5, output_size[1] * 0.5], dtype=np.float64)
    matrix = np.concatenate([linear, (dst_center - linear @ np.asarray(center, np.float64))[:, None]], axis=1)
    if inverse:
        return cv2.invertAffineTransform(matrix)
    return matrix


def affine_transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine ``matrix`` to (N, 2) points; returns (N, 2) floats (float32 stays float32)."""
    pts = np.asarray(points)
    out = pts.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    return out.astype(np.result_type(pts.dtype, np.float32))


def flip_keypoints(keypoints: np.ndarray, image_width: int, flip_index: Sequence[int]) -> np.ndarray:
    """Horizontally flip (K, 3) keypoints: ``x' = W - 1 - x`` and swap left/right channels.

    ``flip_index[k]`` is the channel whose point becomes channel ``k`` (``KeypointSpec.flip_index``).
    Visibility travels with its point.
    """
    flipped = np.array(keypoints, dtype=np.float32, copy=True)[list(flip_index)]
    flipped[:, 0] = image_width - 1 - flipped[:, 0]
    return flipped


def flip_center(center: Sequence[float], image_width: int) -> np.ndarray:
    """The crop centre after a horizontal flip of the whole image (``x' = W - 1 - x``)."""
    out = np.array(center, dtype=np.float32, copy=True)
    out[0] = image_width - 1 - out[0]
    return out


def _flip_matrix(image_width: int) -> np.ndarray:
    """(3, 3) homogeneous matrix of the horizontal flip ``x' = W - 1 - x``."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def half_body_center_scale(
    keypoints: np.ndarray,
    upper_body_ids: Sequence[int],
    aspect_ratio: float,
    rng: np.random.Generator,
    padding: float = 1.5,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop around the labelled upper- or lower-body joints only (mmpose 0.x ``half_body_transform``).

    The upper set is chosen when ``randn < 0.5`` (about 69 %) and it has more than 2 joints,
    else the lower set if it has more than 2, else the upper set. The centre is the *mean* of the
    chosen joints (as mmpose), the size their extent made to ``aspect_ratio`` times ``padding``.
    Returns ``None`` when fewer than 2 joints are chosen.
    """
    labelled = keypoints[:, 2] > 0
    is_upper = np.zeros(len(keypoints), dtype=bool)
    is_upper[list(upper_body_ids)] = True
    upper = keypoints[labelled & is_upper, :2]
    lower = keypoints[labelled & ~is_upper, :2]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        chosen = upper
    elif len(lower) > 2:
        chosen = lower
    else:
        chosen = upper
    if len(chosen) < 2:
        return None
    return chosen.mean(axis=0).astype(np.float32), _joints_scale(chosen, aspect_ratio, padding)


def _joints_scale(joints: np.ndarray, aspect_ratio: float, padding: float = 1.5) -> np.ndarray:
    """The half-body crop's size: the joints' extent made to ``aspect_ratio``, times ``padding``."""
    w, h = (joints.max(axis=0) - joints.min(axis=0)).astype(np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return np.array([w, h], dtype=np.float32) * padding


@dataclass
class TransformedInstance:
    """Output of :class:`TopDownTransform`.

    ``center`` / ``scale`` / ``rotation`` describe the crop that was cut, in the frame of the
    original image, mirrored first when ``flipped`` is True (mmpose's meta convention).
    """

    image: torch.Tensor  # float32 (3, H, W), RGB, ImageNet-normalised (uint8 RGB with uint8_output)
    keypoints: np.ndarray  # float32 (K, 3) in input-crop pixels; v unchanged
    center: np.ndarray  # float32 (2,)
    scale: np.ndarray  # float32 (2,)
    rotation: float
    flipped: bool


@dataclass
class CropPlan:
    """The geometry :meth:`TopDownTransform.plan` drew for one instance, before any pixel is read.

    ``warp`` maps original-image pixels onto the input crop (flip included); ``crop`` maps the
    (flipped) keypoints, which are still in original-image pixels here.
    """

    keypoints: np.ndarray  # float32 (K, 3), flipped when ``flipped``
    center: np.ndarray
    scale: np.ndarray
    rotation: float
    flipped: bool
    crop: np.ndarray  # (2, 3)
    warp: np.ndarray  # (2, 3)


#: JPEG decoders scale by these factors in the DCT domain (libjpeg's scale_denom), largest first.
JPEG_REDUCTIONS = (8, 4, 2, 1)


def reduction_matrix(factor: int) -> np.ndarray:
    """(3, 3) map from the pixels of an image decoded at 1/``factor`` to the full image's: reduced pixel
    ``j`` averages full pixels ``factor*j ... factor*j + factor - 1``, so its centre is at
    ``factor*j + (factor - 1) / 2``."""
    offset = (factor - 1) * 0.5
    return np.array([[factor, 0.0, offset], [0.0, factor, offset], [0.0, 0.0, 1.0]])


class TopDownTransform:
    """Cut the ``input_size`` crop of one instance, with mmpose 0.x training augmentations.

    Training draws, in mmpose's order: flip (``flip_prob``), half-body (``half_body_prob``, only
    with more than ``half_body_min_keypoints`` labelled joints), scale ``clip(N(0,1)*f+1, 1-f, 1+f)``
    with ``f = scale_factor``, rotation ``clip(N(0,1)*r, -2r, 2r)`` with ``r = rotation_factor``
    applied with ``rotation_prob``. Optional photometric jitter (albumentations ``ColorJitter``,
    brightness/contrast/saturation ``color_jitter_strength``, probability ``color_jitter_prob``) is
    off by default because the official code has none. Evaluation (``training=False``) is the
    plain crop. ``uint8_output`` returns the crop as uint8 RGB, to be normalised on the device by
    :func:`normalize_uint8_images` (the same values, a quarter of the bytes through the loader).

    A call is :meth:`plan` (the geometry, from the image width alone) then :meth:`apply` (the
    pixels). Between the two a reader may decode the image at a reduced size that still gives the
    crop at least its output resolution (:meth:`max_reduction`; ``data.reduced_decode``).

    Randomness comes from the ``rng`` passed to a call (the dataset derives one per sample from the
    seed, the epoch and the sample index, which makes every augmentation reproducible whatever the
    worker count or a resume point), else from the transform's own generator (:meth:`set_seed`;
    :func:`clamp.data.dataset.worker_init_fn` reseeds it in each DataLoader worker). The photometric
    albumentations Compose is reseeded from that generator at every call.
    """

    def __init__(
        self,
        keypoint_spec: KeypointSpec | str,
        input_size: tuple[int, int] = (256, 256),
        training: bool = False,
        flip_prob: float = 0.5,
        half_body_prob: float = 0.3,
        half_body_min_keypoints: int = 8,
        scale_factor: float = 0.5,
        rotation_factor: float = 40.0,
        rotation_prob: float = 0.6,
        color_jitter_prob: float = 0.0,
        color_jitter_strength: float = 0.2,
        seed: int | None = None,
        uint8_output: bool = False,
    ) -> None:
        for name, p in (
            ("flip_prob", flip_prob),
            ("half_body_prob", half_body_prob),
            ("rotation_prob", rotation_prob),
            ("color_jitter_prob", color_jitter_prob),
        ):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"TopDownTransform: {name}={p} must be a probability in [0, 1]")
        if len(input_size) != 2 or min(input_size) <= 0:
            raise ValueError(f"TopDownTransform: input_size={input_size} must be a positive (width, height) pair")
        if not 0.0 <= scale_factor < 1.0:
            raise ValueError(f"TopDownTransform: scale_factor={scale_factor} must be in [0, 1)")
        self.spec = get_keypoint_spec(keypoint_spec)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.training = training
        self.flip_prob = flip_prob
        self.half_body_prob = half_body_prob
        self.half_body_min_keypoints = half_body_min_keypoints
        self.scale_factor = scale_factor
        self.rotation_factor = rotation_factor
        self.rotation_prob = rotation_prob
        self.uint8_output = uint8_output
        self._photometric = None
        if training and color_jitter_prob > 0:
            # Imported only when used: albumentations adds ~1 s of import time.
            import albumentations as A

            self._photometric = A.Compose(
                [
                    A.ColorJitter(
                        brightness=color_jitter_strength,
                        contrast=color_jitter_strength,
                        saturation=color_jitter_strength,
                        hue=0.0,
                        p=color_jitter_prob,
                    )
                ]
            )
        self.set_seed(seed)

    @property
    def aspect_ratio(self) -> float:
        return self.input_size[0] / self.input_size[1]

    def set_seed(self, seed: int | None) -> None:
        """Restart the transform's own generator from ``seed`` (None = fresh OS entropy)."""
        self._rng = np.random.default_rng(seed)

    def __call__(
        self,
        image: np.ndarray,
        keypoints: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> TransformedInstance:
        """Crop ``image`` (H, W, 3 uint8 RGB) at ``center``/``scale``; ``keypoints`` (K, 3) in image px.

        ``rng`` draws the training augmentation (default: the transform's own generator).
        """
        rng = self._rng if rng is None else rng
        self._check_image(image)
        return self.apply(image, self.plan(image.shape[1], keypoints, center, scale, rng), rng)

    def _check_image(self, image: np.ndarray) -> None:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"TopDownTransform: expected an (H, W, 3) RGB image, got shape {image.shape}")

    def plan(
        self,
        image_width: int,
        keypoints: np.ndarray,
        center: np.ndarray,
        scale: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> CropPlan:
        """Draw the crop geometry of one instance (flip, half-body, scale, rotation) for an image
        ``image_width`` pixels wide; the draws are those of a plain call, in the same order."""
        rng = self._rng if rng is None else rng
        if keypoints.shape != (self.spec.num_keypoints, 3):
            raise ValueError(
                f"TopDownTransform: keypoints shape {keypoints.shape} does not match keypoint spec "
                f"'{self.spec.name}' ({self.spec.num_keypoints}, 3)"
            )
        kpts = np.array(keypoints, dtype=np.float32, copy=True)
        center = np.array(center, dtype=np.float32, copy=True)
        scale = np.array(scale, dtype=np.float32, copy=True)
        rotation = 0.0
        flipped = False
        pre = np.eye(3)
        if self.training:
            if rng.random() < self.flip_prob:
                flipped = True
                kpts = flip_keypoints(kpts, image_width, self.spec.flip_index)
                center = flip_center(center, image_width)
                pre = _flip_matrix(image_width)
            if np.count_nonzero(kpts[:, 2] > 0) > self.half_body_min_keypoints and rng.random() < self.half_body_prob:
                half = half_body_center_scale(kpts, self.spec.upper_body_ids, self.aspect_ratio, rng)
                if half is not None:
                    center, scale = half
            f = self.scale_factor
            scale = scale * np.float32(np.clip(rng.standard_normal() * f + 1.0, 1.0 - f, 1.0 + f))
            r = self.rotation_factor
            rot = float(np.clip(rng.standard_normal() * r, -2.0 * r, 2.0 * r))
            rotation = rot if rng.random() < self.rotation_prob else 0.0
        crop = get_affine_transform(center, scale, rotation, self.input_size)
        # One resampling from the original pixels: crop after (optional) flip.
        warp = (np.vstack([crop, [0.0, 0.0, 1.0]]) @ pre)[:2]
        return CropPlan(kpts, center, scale, rotation, flipped, crop, warp)

    def max_reduction(self, plan: CropPlan) -> int:
        """The largest JPEG reduction (8, 4, 2 or 1) at which the crop still spans at least as many
        decoded pixels as the output has: decoding at that size loses nothing the warp would keep."""
        return self._reduction_for(plan.scale)

    def smallest_reduction(self, keypoints: np.ndarray, scale: np.ndarray) -> int:
        """The largest JPEG reduction that :meth:`max_reduction` allows for every crop :meth:`plan` can
        draw for this instance (any flip, half-body choice and scale draw): an image decoded at it once
        serves all of its training samples (``data.decoded_cache``)."""
        scales = [np.asarray(scale, dtype=np.float32)]
        labelled = keypoints[:, 2] > 0
        if self.training and self.half_body_prob > 0 and np.count_nonzero(labelled) > self.half_body_min_keypoints:
            is_upper = np.zeros(len(keypoints), dtype=bool)
            is_upper[list(self.spec.upper_body_ids)] = True
            # A flip mirrors the joints and swaps left and right ids: both sets' extents are checked.
            for kpts in (keypoints, flip_keypoints(keypoints.astype(np.float32), 1, self.spec.flip_index)):
                seen = kpts[:, 2] > 0
                for joints in (kpts[seen & is_upper, :2], kpts[seen & ~is_upper, :2]):
                    if len(joints) >= 2:
                        scales.append(_joints_scale(joints, self.aspect_ratio))
        smallest = np.min(np.stack(scales), axis=0)
        if self.training:
            smallest = smallest * np.float32(1.0 - self.scale_factor)
        return self._reduction_for(smallest)

    def _reduction_for(self, scale: np.ndarray) -> int:
        source_pixels = min(float(scale[0]) / self.input_size[0], float(scale[1]) / self.input_size[1])
        return next((factor for factor in JPEG_REDUCTIONS if source_pixels >= factor), 1)

    def apply(
        self, image: np.ndarray, plan: CropPlan, rng: np.random.Generator | None = None, reduction: int = 1
    ) -> TransformedInstance:
        """Cut ``plan``'s crop from ``image``: the full image, or its decoding at 1/``reduction`` of
        the size (:func:`reduction_matrix` maps it back; the keypoints are unaffected)."""
        rng = self._rng if rng is None else rng
        self._check_image(image)
        warp = (
            plan.warp if reduction == 1 else (np.vstack([plan.warp, [0.0, 0.0, 1.0]]) @ reduction_matrix(reduction))[:2]
        )
        patch = cv2.warpAffine(
            image, warp, self.input_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
        )
        if self._photometric is not None:
            self._photometric.set_random_seed(int(rng.integers(2**32)))
            patch = self._photometric(image=patch)["image"]
        kpts = plan.keypoints.copy()
        kpts[:, :2] = affine_transform_points(kpts[:, :2], plan.crop)
        if self.uint8_output:  # normalised on the device (normalize_uint8_images): a quarter of the bytes
            pixels = patch
        else:
            pixels = (patch.astype(np.float32) - _MEAN_255) * _INV_STD_255
        return TransformedInstance(
            image=torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
            keypoints=kpts,
            center=plan.center.astype(np.float32),
            scale=plan.scale.astype(np.float32),
            rotation=plan.rotation,
            flipped=plan.flipped,
        )
