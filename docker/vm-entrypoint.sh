#!/bin/sh
# A lab-in-a-box VM container (LABBOT_VM_ROLE=vm1|vm2): tgtd in the background, the agent in the foreground.
# The agent turns this container into the lab VM the outer simulator created (see lab_in_a_box/agent.py).
set -eu

role=${LABBOT_VM_ROLE:?set LABBOT_VM_ROLE to vm1 or vm2}
mkdir -p /run/sshd /run/tgtd /var/lib/labbot-vm /var/log/labbot-vm
# tgtd ignores SIGTERM and the agent resets its targets between labs, so it simply lives as long as the container.
/usr/sbin/tgtd -f >> /var/log/labbot-vm/tgtd.log 2>&1 &
exec python -m lab_in_a_box.agent --role "$role" --labs "${LABBOT_LABS_DIR:-/labs}"
