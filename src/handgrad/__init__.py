"""handgrad."""
