"""Concurrent steps writing the lab record: found by the API fault runs, where nested storage and the nested
network/image step finished at the same moment and the lab lost the ``offering`` role (nested_vm then failed
with KeyError on every retry)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.settings import load_settings
from services.crypto import SecretBox
from services.labs.build.context import LabContext
from services.labs.build.steps import TITLES
from services.labs.notifier import RecordingNotifier
from services.labs.service import Actor, LabService
from tests.reliability.driver import PROFILES


async def test_concurrent_nested_ids_are_merged_not_overwritten(sessions: async_sessionmaker[AsyncSession]) -> None:
    settings = load_settings(default_profile="sandbox")
    service = LabService(sessions=sessions, settings=settings, profiles=PROFILES, notifier=RecordingNotifier())
    view = await service.create(Actor("U1"), name="merge")
    ctx = LabContext(lab_id=view.id, lab_uuid=view.uuid, lab_name=view.name, profile=PROFILES["sandbox"],
                     settings=settings, sessions=sessions, notifier=RecordingNotifier(),
                     box=SecretBox(settings.secret_key), connections=None, titles=TITLES)
    await ctx.set_nested(zone="z", cluster="c")

    # The two branches after nested_compute record their roles at the same moment.
    await asyncio.gather(ctx.set_nested(primary_storage="ps"), ctx.set_nested(image="i", offering="o", l3="l"),
                         ctx.update(progress_ref="C1:1"))

    lab = await ctx.lab()
    assert lab.nested_ids == {"zone": "z", "cluster": "c", "primary_storage": "ps", "image": "i", "offering": "o",
                              "l3": "l"}
    assert lab.progress_ref == "C1:1"
