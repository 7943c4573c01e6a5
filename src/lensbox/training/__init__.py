"""lensbox.training."""
