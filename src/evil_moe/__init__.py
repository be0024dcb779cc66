"""Evil MoE: GRPO that routes reward hacking into a removable quarantine block of a LoRA adapter."""

__version__ = "0.1.0"
