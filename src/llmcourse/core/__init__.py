"""The small core every package stands on: errors, consoles, outputs, model loading, the cache."""
