"""Collect pairwise preferences: a Label Studio server, plus programmatic, reward-model and LLM-judge annotators.

Imports: `reward`, `preference`, `rlhfkit.lm`, `rlhfkit.models`, `rlhfkit.core`.
"""
