"""Optimizers, learning-rate schedules and the LR finder."""
