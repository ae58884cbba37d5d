"""Putting a video on disk: the streaming, atomic, credential-scoped download and what it writes.

Used by the hook's ``download_to`` and the download operator alike (one path, one Asset event);
the allowed hosts, the file claim and the sidecar that says which generation a file holds.
"""
