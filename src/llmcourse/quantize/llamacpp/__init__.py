"""llama.cpp: its converter entry, the importance matrix, and where its tools come from."""
