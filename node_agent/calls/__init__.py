"""Invocations on this node.

``runner`` takes one delivered invocation through decode, lookup, run, ``finished`` event
and ack; ``executor`` runs it in a container under the node's policy (cold, or a warm
container from ``node_agent.pools``); ``catalog`` reads runtimes and function versions from
KV; ``rescue`` moves work routed to a dead node back to its runtime's subject.
"""
