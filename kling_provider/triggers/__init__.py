"""Kling provider triggers: see ``kling_provider.triggers.kling``."""
