"""Tests of rlhfkit/ (command line, pipeline, models, DSPy LMs, core)."""
