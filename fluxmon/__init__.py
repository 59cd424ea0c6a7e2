"""Flux Push Monitor: did Flux deploy the commit I just pushed, and if not, why?"""

__version__ = "0.1.0"
