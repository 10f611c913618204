"""rlhfkit: RLHF reward-modeling and preference toolkit.

This package holds the command line (`rlhfkit.cli`), the end-to-end pipeline (`rlhfkit.pipeline`) and the small
shared core (`rlhfkit.core`: settings, model registry, atomic writes). It imports nothing on purpose: importing
`rlhfkit.core` from the lower layers must not pull in the command line.
"""

__version__ = "0.1.0"
