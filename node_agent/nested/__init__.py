"""Calls made by calls: a handler's ``faas.call`` and the platform's sequences.

``calls`` (the node's :class:`NestedCalls`) checks a nested call against its tree's limits and
the caller's allow-list and publishes it as an ordinary invocation with ``parent``, ``root``,
``depth`` and ``caller``; ``waits`` takes the children's ``finished`` events (a reply subject,
the events stream as a fallback); ``scope`` is one running call's nested calls, answered
over its protocol channel; ``parking`` gives a waiting call's slot back meanwhile (its
container stays reserved, within a per-node bound); ``sequence`` runs a sequence function's
steps as children without a container.
"""
