"""``labbot bake``: an image of VM2 with ZStack installed, made from a lab (see ``build.bake`` for the steps).

From a lab named by the admin, or from a lab labbot builds for the purpose (an exercise lab started at
``nested_compute``: installed, nested ZStack still empty) and destroys afterwards. While baking, labbot holds the
lab's lease: no build, destroy or health check touches it; a destroy asked meanwhile runs after.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime

from services.db import utcnow
from services.errors import ConflictError, NotFoundError
from services.i18n import _
from services.labs.build.bake import BakedImage, Progress
from services.labs.models import LabState
from services.labs.service import Actor, LabService

log = logging.getLogger(__name__)

BUILD_TIMEOUT = 4 * 3600.0  # the temporary lab's install: up to an hour on a real platform, with margin
IMAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
BAKEABLE = (LabState.READY, LabState.EXPIRING)


class BakeService:
    """Bakes VM2 images from labs; wired by ``Runtime`` (``bake`` is the pipeline's, ``hold`` the engine's)."""

    def __init__(
        self,
        service: LabService,
        *,
        bake: Callable[[int, str, Progress], Awaitable[BakedImage]],
        hold: Callable[[int], object],
        wait_idle: Callable[[int, float], Awaitable[None]],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.service = service
        self._bake = bake
        self._hold = hold
        self._wait_idle = wait_idle
        self.clock = clock

    def image_name(self, profile: str) -> str:
        """The default name of a new baked image: profile and time, so bakes never collide."""
        return f"{self.service.settings.resource_prefix}-{profile}-vm2-baked-{self.clock():%Y%m%d-%H%M}"

    async def bake(self, *, profile: str | None, from_lab: str | None, image_name: str | None,
                   progress: Progress) -> BakedImage:
        """Bake from ``from_lab``, else from a lab of ``profile`` built up to the install for the purpose."""
        if image_name is not None and not IMAGE_NAME.fullmatch(image_name):
            raise ConflictError(_("image name {name!r}: letters, digits, dots, dashes and underscores, at most 100")
                                .format(name=image_name))
        if from_lab is not None:
            lab = await self.service.status(from_lab)
            if profile is not None and profile != lab.profile:
                raise ConflictError(_("lab `{name}` is of profile {actual}, not {profile}").format(
                    name=from_lab, actual=lab.profile, profile=profile))
            return await self._bake_lab(lab.id, lab.name, lab.state, image_name or self.image_name(lab.profile),
                                        progress)
        chosen, _recipe, _ttl = self.service.recipe(profile, None)
        name = f"bake-{self.clock():%m%d%H%M%S}"
        await progress(_("building lab `{name}` of profile {profile} up to the ZStack install (nested ZStack left "
                         "empty)").format(name=name, profile=chosen))
        lab = await self.service.create(Actor.system(), name=name, profile=chosen, exercise=True,
                                        start="nested_compute")
        try:
            await self._wait_idle(lab.id, BUILD_TIMEOUT)
            built = await self.service.view(lab.id)
            if built.state not in BAKEABLE:
                raise ConflictError(_("lab `{name}` did not build: step {step} failed: {error}").format(
                    name=name, step=built.failed_step or "?", error=built.error or "?"))
            return await self._bake_lab(built.id, name, built.state, image_name or self.image_name(chosen),
                                        progress)
        finally:
            await progress(_("destroying lab `{name}`").format(name=name))
            try:
                await self.service.destroy(Actor.system(), name)
                await self._wait_idle(lab.id, BUILD_TIMEOUT)
            except NotFoundError:
                pass

    async def _bake_lab(self, lab_id: int, name: str, state: str, image_name: str,
                        progress: Progress) -> BakedImage:
        if state not in BAKEABLE:
            raise ConflictError(_("lab `{name}` is {state}; a lab is baked once it is built").format(
                name=name, state=state))
        async with self._hold(lab_id):  # type: ignore[attr-defined]
            baked = await self._bake(lab_id, image_name, progress)
        await self.service.lifecycle.note(
            lab_id, kind="baked", detail=_("VM2 baked into image {image} ({uuid}), ZStack {version}").format(
                image=baked.name, uuid=baked.uuid, version=baked.zstack_version))
        return baked
