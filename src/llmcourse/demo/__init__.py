"""The lab demo: every stage on the embedded model, each in its own module (`run` orchestrates)."""
