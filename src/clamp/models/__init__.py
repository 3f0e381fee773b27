"""CLAMP models: dense CLIP encoders, text prompts, context decoder, heads, and ``create_model(name)``."""

from clamp.models.factory import create_model, list_models, model_defaults
from clamp.models.pose_models import CLAMP, PoseModel, PoseOutput, SimpleBaseline
from clamp.models.weight_files import PretrainedWeightsError

__all__ = [
    "CLAMP",
    "PoseModel",
    "PoseOutput",
    "PretrainedWeightsError",
    "SimpleBaseline",
    "create_model",
    "list_models",
    "model_defaults",
]
