"""Local models as DSPy language models: the in-process engine, the served LM and the plain adapter for small
models."""
