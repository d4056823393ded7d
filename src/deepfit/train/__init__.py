"""The trainer: deepfit's own compiled JAX loop over a Keras model."""
