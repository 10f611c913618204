"""Collect pairwise preferences: a Label Studio server, plus programmatic, reward-model and LLM-judge annotators.

Built in issue 3. Imports: `reward`, `preference`, `rlhfkit.core`.
"""
