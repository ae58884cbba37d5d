"""Kling provider operators: see ``kling_provider.operators.kling``."""
