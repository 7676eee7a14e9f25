"""llmcourse: one recipe-driven command line for the whole life of an open LLM."""

__version__ = "0.1.0"
