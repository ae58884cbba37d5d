"""Kling provider sensors: see ``kling_provider.sensors.kling``."""
