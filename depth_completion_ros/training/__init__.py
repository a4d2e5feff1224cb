"""Training: trainer, configs, multi-stage schedules, pruning stability test."""
