"""lensbox.data."""
