"""Shared, vendor-side code: nothing here imports sparse_core."""
