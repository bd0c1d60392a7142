"""Evaluation: LM loss (and, from the evaluation issue on, multiple-choice tasks)."""
