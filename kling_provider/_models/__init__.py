"""Models that retire: the deprecation feed's rules (``retirement``, pure) and where the feed is
kept (``feeds``: the shipped snapshot, the last read per API base URL, in memory and on disk).

Used by the service reads (``_api``), the hook before paying, and the videos page's badges.
Imports only the package's foundation (``exceptions``).
"""
