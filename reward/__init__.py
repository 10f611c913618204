"""Reward models: train with TRL, evaluate, score. Imports: `preference`, `rlhfkit.models`, `rlhfkit.core`."""
