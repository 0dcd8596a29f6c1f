"""Warm containers kept ahead of calls.

``pool`` sizes one pool per key from demand, hands idle containers to calls and expires or
evicts them; a key says which layer a container serves (a runtime's empty containers, or
one function version's); ``warm`` is how a runtime's empty container is given a function
and one call.
"""
