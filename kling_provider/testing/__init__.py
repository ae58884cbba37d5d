"""Offline stand-ins for the AI/ML API: the simulator (``python -m kling_provider.testing.simulator``)."""
