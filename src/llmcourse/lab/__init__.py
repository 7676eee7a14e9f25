"""The lab: a tiny Llama model, its tokenizer and synthetic skills, all made locally."""

# Part of every lab cache key: bump it when the skills, their splits, the corpus or the way the lab's
# models are trained change, so that models cached from before are rebuilt instead of reused.
DATA_VERSION = 6
