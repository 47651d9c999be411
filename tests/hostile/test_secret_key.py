"""LABBOT_SECRET_KEY: weak and placeholder keys refused by every command that opens a real database, a salted
and versioned key derivation, and rotation that re-encrypts every stored secret and survives an interruption."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from services.crypto import DEMO_KEY, SecretBox, new_secret_key, secret_key_problem
from services.labs import repository as repo
from services.labs.models import Lab
from services.secret_rotation import rotate_secrets
from tests.slack.world import Sessions

ROOT = Path(__file__).resolve().parents[2]
WEAK = [DEMO_KEY, "changeme-changeme", "aaaaaaaaaaaaaaaa", "a" * 64, "abcd" * 16, "short-but-random-9f",
        "0123456789" * 4]


def v1_ciphertext(key: str, plain: bytes) -> str:
    """A secret as labbot wrote it before the v2 format: Fernet under SHA-256("labbot-secretbox-v1:" + key)."""
    import base64
    import hashlib

    from cryptography.fernet import Fernet

    fernet_key = base64.urlsafe_b64encode(hashlib.sha256(b"labbot-secretbox-v1:" + key.encode()).digest())
    return Fernet(fernet_key).encrypt(plain).decode()


def test_weak_keys_are_refused_and_fresh_ones_accepted() -> None:
    for key in WEAK:
        assert secret_key_problem(key) is not None, key
    for _ in range(20):
        assert secret_key_problem(new_secret_key()) is None


async def _labbot(*args: str, **env: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "LABBOT_"))}
    environ.update(env)
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env=environ,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def test_every_command_on_a_real_database_refuses_a_weak_key(tmp_path: Path) -> None:
    env = {"LABBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'labbot.db'}"}
    slack = {"SLACK_BOT_TOKEN": "xoxb-1234567890-abcdefgh", "SLACK_SIGNING_SECRET": "0f9e8d7c6b5a49382716"}
    runs = await asyncio.gather(
        _labbot("worker", **env),  # the published demo key (the default)
        _labbot("sweep", "--dry-run", **env, LABBOT_SECRET_KEY="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        _labbot("console", "--script", "/lab list", **env, LABBOT_SECRET_KEY="9f" * 20),
        _labbot("run", **env, **slack, LABBOT_SECRET_KEY="x-short-key-1"),
        _labbot("secret-key", "rotate", DEMO_KEY, "changeme-changeme", **env),
    )
    for code, output in runs:
        assert code == 2, output
        assert "LABBOT_SECRET_KEY" in output or "the new key" in output, output
    code, output = await _labbot("secret-key", "new")
    assert code == 0 and secret_key_problem(output.strip()) is None


def test_the_key_derivation_is_salted_and_versioned() -> None:
    box_key = new_secret_key()
    box = SecretBox(SecretStr(box_key))
    first, second = box.encrypt(SecretStr("root-pw")), box.encrypt(SecretStr("root-pw"))
    assert first.startswith("v2$") and first != second
    assert box.decrypt(first).get_secret_value() == box.decrypt(second).get_secret_value() == "root-pw"
    legacy = v1_ciphertext(box_key, b"old-pw")  # what labbot stored before the v2 format
    assert box.decrypt(legacy).get_secret_value() == "old-pw" and not box.is_current(legacy)
    assert not SecretBox(SecretStr(new_secret_key())).can_decrypt(first)


class Interrupted(Exception):
    pass


async def test_rotation_reencrypts_everything_and_survives_an_interruption(sessions: Sessions) -> None:
    old, new = SecretBox(SecretStr(DEMO_KEY)), SecretBox(SecretStr(new_secret_key()))
    plain: dict[str, tuple[str, str]] = {}
    async with sessions() as session, session.begin():
        for i in range(4):
            lab = await repo.create(session=session, name=f"lab-{i}", owner="U_ALICE", profile="sandbox",
                                    expires_at=repo.utcnow(), channel=None)
            plain[lab.name] = (f"key-{i}", f"pw-{i}")
            lab.ssh_private_key_enc = v1_ciphertext(DEMO_KEY, f"key-{i}".encode())  # the old format
            lab.host_password_enc = old.encrypt(SecretStr(f"pw-{i}"))  # the new format, old key
        await repo.save(session=session)
    rows = 0

    def crash_after_two() -> None:
        nonlocal rows
        rows += 1
        if rows == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        await rotate_secrets(sessions, old=old, new=new, after_row=crash_after_two)
    async with sessions() as session:
        labs = (await session.scalars(select(Lab).order_by(Lab.id))).all()
    under_new = [lab.name for lab in labs if new.can_decrypt(lab.host_password_enc or "")]
    assert under_new == ["lab-0", "lab-1"]  # whole rows: each lab under exactly one key
    assert all(old.can_decrypt(lab.ssh_private_key_enc or "") for lab in labs[2:])
    report = await rotate_secrets(sessions, old=old, new=new)
    assert report.rewritten == 4 and report.already_new == 4 and not report.unreadable
    async with sessions() as session:
        labs = (await session.scalars(select(Lab).order_by(Lab.id))).all()
    for lab in labs:
        for value in (lab.ssh_private_key_enc or "", lab.host_password_enc or ""):
            assert new.is_current(value) and not old.can_decrypt(value)
        assert (new.decrypt(lab.ssh_private_key_enc or "").get_secret_value(),
                new.decrypt(lab.host_password_enc or "").get_secret_value()) == plain[lab.name]
