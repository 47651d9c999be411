"""The nested VM's image, brought by labbot: uploaded to VM1 and served there on the lab's VPC.

The lab platform has no internet, so the nested ZStack's AddImage cannot fetch CirrOS from its home. labbot
copies the profile's local image file to VM1 over SFTP (once: an identical file is not sent again, and the
copy's SHA-256 is checked), serves its directory with Python's ``http.server`` bound to VM1's VPC address
as a detached job (its own session, so it outlives the SSH connection that started it, like any detached job
here), opens the port in firewalld where it runs, and stops the server when the lab is destroyed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from services import shell
from services.errors import ConfigError, ExternalError
from services.i18n import _
from services.iscsi.firewall import close_ports, open_port
from services.ssh.detached import cancel_job, job_status, reset_job, start_detached
from services.ssh.session import LabSSH

log = logging.getLogger(__name__)

IMAGE_DIR = "/root/labbot/images"  # on VM1; survives reboots, private to root
SERVE_JOB = "serve-image"
FIREWALL_OWNER = "labbot-image-server"
_READY_SECONDS = 60.0

# Serve {directory} on {address}:{port}. Rocky 8 may lack python3 but always has platform-python (3.6, so no
# ThreadingHTTPServer). Not ``python3 -m http.server``: its HTTPServer.server_bind asks the resolver for the
# address's FQDN before it listens, which on a lab VPC whose DNS server does not answer (an offline platform)
# holds the server back for the resolver's timeouts (glibc: 2 attempts x 5 s).
_SERVE = r"""cd {directory} && exec "$(command -v python3 || echo /usr/libexec/platform-python)" -c '
import http.server, socketserver, sys
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]
Server((sys.argv[1], int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()
' {address} {port}"""

# $1 address, $2 port: exit 0 once something listens there (bash's /dev/tcp; cheaper than starting Python,
# which takes seconds on a loaded host). The file itself was checked by its SHA-256 when uploaded.
_PROBE = r"""timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null"""


class ImageServeError(ExternalError):
    """The nested image could not be put on VM1 or served there."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


async def upload_image(ssh: LabSSH, local: Path) -> str:
    """Put ``local`` in VM1's image directory (skipped when already identical); verify its SHA-256 there."""
    name = shell.safe_path(local.name)
    remote = f"{IMAGE_DIR}/{name}"
    sent = await ssh.upload("vm1", local, remote, 0o644)
    expected = await asyncio.to_thread(_sha256, local)
    check = await ssh.run("vm1", f"sha256sum {shell.quote(remote)}", timeout=300, check=False)
    found = check.stdout.split()[:1]
    if not check.ok or found != [expected]:
        raise ImageServeError(
            _("the nested image on VM1 ({remote}) does not match {name}: SHA-256 {value}, expected {expected}").format(
                remote=remote, name=local.name, value=found[0] if found else "unreadable", expected=expected
            )
        )
    log.info("nested image %s on vm1 lab=%s (%s)", name, ssh.lab, "sent" if sent else "already there")
    return remote


async def serve_image(ssh: LabSSH, *, address: str, port: int, url: str) -> str:
    """Serve VM1's image directory on ``address:port`` (started once, restarted if it died); wait until ``url``
    answers. Returns what was done, for the step's log."""
    status = await job_status(ssh, "vm1", SERVE_JOB)
    done = "server already running"
    if status.state != "running":
        if status.state != "absent":
            await reset_job(ssh, "vm1", SERVE_JOB)  # it stopped (VM1 rebooted, killed): start it again
        command = _SERVE.format(
            directory=shell.quote(IMAGE_DIR), address=shell.quote(shell.ipv4(address)), port=shell.port(port)
        )
        await start_detached(ssh, "vm1", SERVE_JOB, command)
        done = "server started"
    firewall = await open_port(ssh.runner("vm1"), port, FIREWALL_OWNER)
    probe = shell.sh_c(_PROBE, address, shell.port(port))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _READY_SECONDS
    while (await ssh.run("vm1", probe, timeout=60, check=False)).exit_status != 0:
        state = await job_status(ssh, "vm1", SERVE_JOB)
        if state.state != "running" or loop.time() > deadline:
            raise ImageServeError(
                _("the image server for {url} does not listen on VM1 ({state}); `/lab logs` shows its output").format(
                    url=url, state=state.state
                )
            )
        await asyncio.sleep(0.5)
    return _("{done}, firewall: {firewall}").format(done=done, firewall=firewall)


async def stop_image_server(ssh: LabSSH) -> None:
    """Stop the image server and close the port labbot opened for it (used when the lab is destroyed)."""
    await cancel_job(ssh, "vm1", SERVE_JOB)
    await close_ports(ssh.runner("vm1"), FIREWALL_OWNER)


def local_image(path: Path | None, problem: str | None) -> Path:
    """The local image file, or a configuration error that says what is wrong with it."""
    if problem is not None or path is None:
        raise ConfigError(problem or _("the profile names no local nested image file"))
    return path
