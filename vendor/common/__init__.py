"""Datasets, DiffAugment, metrics and run logging shared by every vendor training tree."""
