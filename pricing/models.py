"""Per-project price overrides (see pricing/services.py)."""
