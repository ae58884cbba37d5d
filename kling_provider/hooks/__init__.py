"""Kling provider hooks: see ``kling_provider.hooks.kling``."""
