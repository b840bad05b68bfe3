"""Benchmarks and the load test of notifsvc (``make bench``, ``make load-test``).

Nothing here is imported by the product; the modules only drive it from outside, on
127.0.0.1, with bounded loops.
"""
