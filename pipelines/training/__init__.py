"""Training loops, one explicit function per method family (FixMatch; KE / Noisy Student / distillation)."""
