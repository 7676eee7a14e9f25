"""The lab: a tiny Llama model, its tokenizer and synthetic skills, all made locally."""
