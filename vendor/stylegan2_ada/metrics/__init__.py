"""Evaluation metrics under StyleGAN2-ADA's names (thin wrappers over vendor.common.metrics)."""
