"""Fine-tuning commands: sft, dpo, merge-adapter."""
