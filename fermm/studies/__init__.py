"""Finished studies, kept apart from the product path (for example the word-vector twins)."""
