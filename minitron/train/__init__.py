"""Training machinery shared by teacher correction, distillation and alignment."""
