"""The lab: a tiny Llama model, its tokenizer and synthetic skills, all made locally."""

# Part of every lab cache key: bump it when the skills, their splits or the corpus change, so that
# models cached from older lab data are rebuilt instead of reused.
DATA_VERSION = 4
