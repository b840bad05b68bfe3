"""Fault injection: the pipeline's stages as processes, killed, starved and fed garbage.

``python -m loadtest.chaos`` (``make chaos``) runs every scenario and checks the invariant:
every notification that got a 202 was delivered to its sink at least once. See docs/chaos.md.
"""
