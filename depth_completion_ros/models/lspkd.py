"""LSPKD teacher and students (dual-encoder ResNet34/ResNet18 depth completion)."""
