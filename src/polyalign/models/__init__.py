"""Models: building a tiny tokenizer and model locally, loading any HF causal LM, chat formatting."""
