"""Model building: config layer specs → a plain ``keras.Sequential``."""
