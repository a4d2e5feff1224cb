"""Adaptation of a model to a user's own vehicle from its recordings, without ground truth (`dcros adapt`)."""
