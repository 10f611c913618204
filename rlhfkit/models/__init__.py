"""Model loading: the registry of bundled models, GGUF conversion, causal LMs and adapters, and the vLLM
server process that serves them."""
