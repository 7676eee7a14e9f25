"""Serving models over HTTP: an OpenAI-compatible API for transformers models; llama.cpp's own server for GGUF."""
