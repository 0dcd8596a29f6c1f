"""Warm containers kept ahead of calls.

``pool`` sizes one pool per key from demand (``demand``), hands idle containers to calls,
promotes a stem cell that loaded a handler into its function's pool, and expires or evicts
containers (between layers: what saves least per second goes first); ``keys`` says which
layer a container serves (a runtime's stem cells, or one function version's warm
containers) and which pools a policy uses; ``factory`` makes a container for a key;
``warm`` is how a stem cell is given a function and one call.
"""
