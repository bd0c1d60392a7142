"""Distillation: logit losses and the training loop they drive."""
