"""The docker-compose lab-in-a-box: the outer simulator's VMs made real by two long-lived VM containers.

``hooks.ComposeHooks`` runs in the outer simulator's container: when labbot creates a lab's VM1 or VM2, it
writes the VM's plan (addresses ZStack allocated, SSH key, root password) into the shared ``/labs`` volume and
waits until the matching container applied it. ``agent`` runs in each VM container: it adds those addresses
to the container's interfaces, starts sshd with the lab's key, links attached volumes under
``/dev/disk/by-id``, and resets the container when the VM is expunged (``vmfiles`` writes what cloud-init
would). The files in ``/labs`` are the whole protocol (see ``protocol``).
"""
