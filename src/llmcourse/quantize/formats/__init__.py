"""One module per quantization format, each registering itself (`llmcourse.quantize.registry`)."""
