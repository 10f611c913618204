"""Shared core: settings, model registry, atomic file writes. The bottom layer: it imports no other rlhfkit package."""
