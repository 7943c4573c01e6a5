"""lensbox.lenses."""
