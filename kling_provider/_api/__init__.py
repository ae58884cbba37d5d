"""The AI/ML API's protocol: requests, answers, errors and retries as I/O-free step generators.

Nothing here sends a request: ``_runtime`` drives these steps with a sync or an async client, so
the sync hook, the async hook and the trigger speak the API through the same code.
"""
