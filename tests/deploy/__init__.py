"""`make deploy-test`: the Ansible deployment run against real hosts made on this machine.

``python -m tests.deploy`` builds a host image (systemd + sshd on the project's Debian base),
starts one container per host on a Docker network of its own, writes an inventory, runs
``ansible-playbook -i <inventory> deploy/ansible/site.yml`` over SSH as an operator would,
then runs the checks of issue 12 against the deployment and prints one line per check. The
hosts and the network are removed at the end, also on a failure or Ctrl-C. See README.md here.
"""
