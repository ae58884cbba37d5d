"""What runs the step generators: connection settings, clock, shared clients and the drivers.

The only private part that does I/O. ``hooks`` sits on top of it; everything below it is pure.
"""
