"""Instruction optimisation: LLM-written instruction templates, evolutionary search and DSPy instruction tuning."""
