"""CLAMP: prompt-based contrastive learning for animal pose estimation."""
