"""Test support: deterministic role models and leak-search helpers (no torch on import)."""
