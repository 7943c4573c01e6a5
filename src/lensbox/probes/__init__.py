"""lensbox.probes."""
