"""Waiting for a generation: when to poll, how long it should take, and handing the wait over.

The step generators behind every waiting path (the operator's, the sensor's, the trigger's), the
adaptive schedule, the expected timings, the trigger's arguments and events, and how triggers
start in a shared event loop.
"""
