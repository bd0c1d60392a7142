"""Data: readers, built-in corpora, tokenization into indexed datasets, samplers."""
