"""lensbox.models."""
