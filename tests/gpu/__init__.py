"""Tests that need a CUDA GPU (see conftest.py here)."""
