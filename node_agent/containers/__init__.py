"""Docker and what goes into a container.

``docker`` is the only module that talks to Docker (aiodocker, non-blocking; teardown is one
function); ``artifacts`` fetches function archives from the object store and turns them into
the tar copied into a container; ``deps`` builds a function version's dependency image once
per node; ``scripts`` holds the shell scripts a container runs; ``firewall`` keeps the host's
iptables rules of the sealed network that containers with network access join.
"""
