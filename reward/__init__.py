"""Reward models: train with TRL, evaluate, score. Built in issue 4. Imports: `preference`, `rlhfkit.core`."""
