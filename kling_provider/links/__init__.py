"""Kling provider links: see ``kling_provider.links.kling``."""
