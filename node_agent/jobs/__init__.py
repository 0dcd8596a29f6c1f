"""Container jobs on this node: an image, a command, a priority.

``intake`` takes the highest waiting priority first within the node's slots; ``worker``
owns a job from delivery to its final event and ack, and its cancels; ``run`` is one
container's life: image, create, start, live logs, wait, teardown.
"""
