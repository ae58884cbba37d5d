"""Money before and after paying: what a generation costs, estimates, and the guard that refuses.

Pure rules used by the hook's calls (``_runtime``), the operators and the triggerer's spend line.
Imports only the package's foundation (``types``, ``catalogue``, ``exceptions``, ``_checks``).
"""
