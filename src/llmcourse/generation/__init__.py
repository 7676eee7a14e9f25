"""Text generation: decoding strategies in a registry, over transformers and llama.cpp."""
