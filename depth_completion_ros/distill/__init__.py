"""Distillation losses (LSPKD, SPKD, ATT, PKT, prediction and black-box distillation)."""
