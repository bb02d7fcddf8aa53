"""The RLM conversation protocol: prompt building and reply parsing.

Deterministic by construction (no I/O, clock, randomness or litellm): workflow modules import it.
"""
