"""`llmcourse quantize`: formats in a registry (GGUF through llama.cpp, the course's naive int8, ...)
and one quality report that measures every output against its source."""
