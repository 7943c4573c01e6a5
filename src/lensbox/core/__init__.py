"""lensbox.core."""
