"""Inference throughput benchmarks of teachers and their pruned students."""
