"""The lab pipeline: the build and destroy jobs the engine runs, and on-demand health.

``build`` runs the steps of services.labs.build.steps as a DAG, recording each step's state in the database before
and after it runs; ``destroy`` tears everything down in reverse order from any state, then verifies on the lab
platform that no VM or volume of the lab is left. Both are idempotent, so the engine can re-run them after a
crash, and both close the lab's connections when they end.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services.crypto import SecretBox
from services.db import utcnow
from services.errors import ConflictError, ExternalError, NotFoundError
from services.i18n import _
from services.labs import repository as repo
from services.labs.build.bake import BakedImage, Progress
from services.labs.build.bake import bake as bake_vm2
from services.labs.build.checks import ExerciseChecker, LabFacts
from services.labs.build.connections import LabConnections
from services.labs.build.context import LabContext
from services.labs.build.dag import StepFailed, describe_error, restrict, run_dag
from services.labs.build.health import HealthReport, run_checks
from services.labs.build.image import stop_image_server
from services.labs.build.steps import TITLES, LabSteps, build_steps
from services.labs.lifecycle import Lifecycle, destroy_backoff
from services.labs.models import HealthCheck, LabState, StepState
from services.labs.notifier import Notice, NoticeKind, Notifier
from services.labs.tasks import TaskResult, seed_steps, student_steps
from services.labs.views import LabView, lab_view
from services.shell import quote
from services.ssh.errors import HostKeyChangedError, SSHUnreachableError
from services.ssh.hostkeys import HostKeyStore
from services.zstack.client import ZStackClient
from services.zstack.errors import ZStackTimeoutError, ZStackUnreachableError

log = logging.getLogger(__name__)

MAX_DESTROY_ATTEMPTS = 5
IMAGE_SERVER_STOP_SECONDS = 20.0
# A hook for crash tests: called after each step is recorded done; raising there stops the build abruptly.
StepHook = Callable[[int, str], Awaitable[None]]


def is_transient(err: BaseException) -> bool:
    """Failures worth another attempt of the same step (the remote side may come back)."""
    if isinstance(err, HostKeyChangedError):
        return False
    if isinstance(err, ZStackUnreachableError | ZStackTimeoutError | SSHUnreachableError | ConnectionError):
        return True
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True  # labbot's database connection was lost (a restart, a failover); the pool opens a new one
    if isinstance(err, PoolTimeoutError):
        return True  # every pooled connection was busy for pool_timeout seconds: a burst, not a broken lab
    return bool(getattr(err, "transient", False))


# The health checks of the parts each exercise task builds: an exercise lab is not unhealthy for lacking a part
# its student has not built yet.
_CHECKS_OF_TASK = {
    "iscsi_target": ("iscsi_portal", "iscsi_lun"),
    "install_zstack": ("nested_api",),
    "nested_compute": ("kvm_host",),
    "nested_storage": ("shared_block",),
    "nested_vm": ("nested_vm",),
}


def unbuilt_checks(lab: LabView) -> set[str]:
    """The health checks to skip on ``lab``: those of exercise tasks not done yet."""
    if lab.exercise is None:
        return set()
    return {check for task in lab.exercise.tasks if not task.done for check in _CHECKS_OF_TASK.get(task.step, ())}


class DestroyRequested(Exception):
    """The lab was asked to be destroyed while being built: the build stops before its next step."""

    def __init__(self, step: str) -> None:
        super().__init__(_("destroy requested; {step} not started").format(step=step))
        self.step = step


class StepRecords:
    """The DAG's StepRecorder: step states go to the lab_steps table through the lab's context."""

    def __init__(self, ctx: LabContext, after_step: StepHook | None) -> None:
        self.ctx = ctx
        self.after_step = after_step

    async def started(self, name: str) -> None:
        if not await self.ctx.step_started(name):
            raise DestroyRequested(name)  # a step boundary: nothing new starts on a lab being destroyed

    async def finished(self, name: str) -> None:
        await self.ctx.step_ended(name, StepState.DONE)
        if self.after_step is not None:
            await self.after_step(self.ctx.lab_id, name)

    async def failed(self, name: str, error: str) -> None:
        await self.ctx.step_ended(name, StepState.FAILED, error=error)

    async def reset(self, name: str) -> None:
        await self.ctx.step_ended(name, StepState.PENDING)


class LabPipeline:
    """Builds, destroys and checks labs; its ``build`` and ``destroy`` are the engine's jobs."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        profiles: dict[str, LabProfile],
        notifier: Notifier,
        lifecycle: Lifecycle,
        outer: ZStackClient,
        host_keys: HostKeyStore,
        box: SecretBox,
        after_step: StepHook | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.profiles = profiles
        self.notifier = notifier
        self.lifecycle = lifecycle
        self.outer = outer
        self.host_keys = host_keys
        self.box = box
        self.after_step = after_step

    async def _context(self, lab_id: int) -> LabContext:
        async with self.sessions() as session:
            lab = await repo.get(session=session, lab_id=lab_id)
        profile = self.profiles.get(lab.profile)
        if profile is None:
            raise NotFoundError(
                _("lab {name} uses profile {profile}, which this labbot does not have").format(
                    name=lab.name, profile=lab.profile
                )
            )

        async def key_changed(lab_uuid: str, host: str, old: str, new: str) -> None:
            async with self.sessions() as session, session.begin():
                row = await repo.get(session=session, lab_id=lab_id)
                await repo.add_event(
                    session=session,
                    lab=row,
                    actor="labbot",
                    kind="host_key_changed",
                    detail=_("{host}: pinned {old}, offered {new}; connection refused").format(
                        host=host, old=old, new=new
                    ),
                )

        connections = LabConnections(
            lab_uuid=lab.uuid, settings=self.settings, host_keys=self.host_keys, on_key_changed=key_changed
        )
        return LabContext(
            lab_id=lab.id,
            lab_uuid=lab.uuid,
            lab_name=lab.name,
            profile=profile,
            settings=self.settings,
            sessions=self.sessions,
            notifier=self.notifier,
            box=self.box,
            connections=connections,
            titles=TITLES,
        )

    # --- build ---------------------------------------------------------------------------------------

    async def build(self, lab_id: int, attention: asyncio.Event) -> None:
        """Run (or resume) the lab's build; on success the lab is ready, on a step failure it is failed."""
        ctx = await self._context(lab_id)
        lab = await ctx.lab()
        if lab.state == LabState.REQUESTED:
            await self.lifecycle.move(
                lab_id, LabState.PROVISIONING, detail=_("build started"), only_from=frozenset({LabState.REQUESTED})
            )
        steps = build_steps(ctx, self.outer, self._health_for(ctx))
        names = [s.name for s in steps]
        solving = (lab.exercise or {}).get("solving")
        if lab.exercise_start is not None:
            # An exercise lab builds only its start (labbot's seed), or, for `/lab solve`, up to one task; what
            # the student did and a check saw is recorded done, so a solve carries on from the student's work.
            seed = seed_steps({s.name: s.after for s in steps}, lab.exercise_start)
            steps = restrict(steps, {solving} if solving else set(seed))
        async with self.sessions() as session, session.begin():
            rows = await repo.ensure_steps(session=session, lab_id=lab_id, names=names)
            done = {r.name for r in rows if r.state == StepState.DONE}
            for row in rows:  # a step left running or failed by an earlier attempt runs again
                if row.state in (StepState.RUNNING, StepState.FAILED):
                    row.state = StepState.PENDING
        if "create_vms" in done:
            try:
                done = await self._rebuild_if_vms_vanished(ctx, done)
            except (ZStackUnreachableError, ZStackTimeoutError) as err:
                # Not knowing is not "gone": resume as recorded; the steps meet the platform's state anyway.
                log.warning("lab %s: could not check its VMs before resuming: %s", ctx.lab_name, describe_error(err))
        # A build ends in ready or failed only if nobody asked for a destroy meanwhile (possibly through
        # another process): DESTROYING must never go back to READY, nor lose the request by becoming FAILED.
        building = frozenset({LabState.PROVISIONING})
        await ctx.refresh()  # the lab and its steps as they are now that the build has started
        try:
            await run_dag(steps, done=done, recorder=StepRecords(ctx, self.after_step), is_retryable=is_transient)
        except DestroyRequested as stop:
            log.info("build of lab %s stopped before %s: a destroy was requested", ctx.lab_name, stop.step)
            return
        except StepFailed as failure:
            await self.lifecycle.move(
                lab_id,
                LabState.FAILED,
                notice=NoticeKind.FAILED,
                detail=f"{failure.step}: {failure.error}",
                only_from=building,
                fields={"failed_step": failure.step, "error": failure.error},
            )
            raise
        finally:
            await ctx.connections.close()
        if solving:
            record = dict((await ctx.lab()).exercise)
            results = dict(record.get("results", {}))
            tasks = set(student_steps(lab.exercise_start or solving))
            for step in (s.name for s in steps if s.name in tasks):
                if not results.get(step, {}).get("done"):
                    results[step] = {"done": True, "detail": _("done by labbot (`/lab solve`)")}
            record.update(results=results, solving=None)
            await self.lifecycle.move(
                lab_id,
                LabState.READY,
                notice=NoticeKind.EXERCISE_SOLVED,
                only_from=building,
                detail=_("labbot did {solving}").format(solving=solving),
                fields={"failed_step": None, "error": None, "exercise": record},
            )
            return
        await self.lifecycle.move(
            lab_id,
            LabState.READY,
            notice=NoticeKind.READY,
            only_from=building,
            fields={"failed_step": None, "error": None, "summary": await self._summary(ctx)},
        )

    async def _rebuild_if_vms_vanished(self, ctx: LabContext, done: set[str]) -> set[str]:
        """A resumed or retried build whose VM1 or VM2 is gone from the platform starts again from create_vms.

        Everything after create_vms lives on those VMs (disk, target, ZStack, nested resources), so every step
        but ``prepare`` runs again; the deterministic resource uuids make the rest converge. The vanished VMs'
        pinned host keys are forgotten in create_vms, when their replacements exist.
        """
        lab = await ctx.lab()
        gone = []
        for role, uuid in (("vm1", lab.vm1_uuid), ("vm2", lab.vm2_uuid)):
            vm = await self.outer.compute.get_vm(uuid) if uuid else None
            if vm is not None and vm.state == "Destroyed":
                await self.outer.compute.expunge_vm(vm.uuid)  # so the replacement can have the same uuid
                vm = None
            if vm is None:
                gone.append(role)
        if not gone:
            return done
        detail = _("{join} no longer on the lab platform; rebuilding from create_vms").format(join=" and ".join(gone))
        log.warning("lab %s: %s", ctx.lab_name, detail)
        async with self.sessions() as session, session.begin():
            row = await repo.get(session=session, lab_id=ctx.lab_id)
            await repo.add_event(session=session, lab=row, actor="labbot", kind="rebuild", detail=detail)
            for step in await repo.list_steps(session=session, lab_id=ctx.lab_id):
                if step.name != "prepare":
                    step.state = StepState.PENDING
        await ctx.output("create_vms", f"{detail}\n")
        return {"prepare"} & done

    async def _summary(self, ctx: LabContext) -> dict[str, str]:
        lab = await ctx.lab()
        if lab.exercise_start is not None:
            return {
                "exercise": _(
                    "labbot built the start; the student's tasks begin at {exercise_start} "
                    "(`/lab check {name}` checks them)"
                ).format(exercise_start=lab.exercise_start, name=lab.name)
            }
        size = f"{(lab.iscsi_size_bytes or 0) / 1024**3:.0f} GB"
        return {
            "primary_storage": _(
                "{primary_storage} (SharedBlock) on VM1's {size} disk via iSCSI, wwid {iscsi_wwid}"
            ).format(primary_storage=ctx.profile.nested.primary_storage, size=size, iscsi_wwid=lab.iscsi_wwid),
            "nested_vm": _("{vm_name} Running on that storage").format(vm_name=ctx.profile.nested.vm_name),
            "ui": _("http://{vm2_ip}:{ui_port} through VM1 (`/lab access {name}`)").format(
                vm2_ip=lab.vm2_ip, ui_port=ctx.profile.install.ui_port, name=lab.name
            ),
        }

    # --- health --------------------------------------------------------------------------------------

    def _health_for(self, ctx: LabContext) -> Callable[[int], Awaitable[HealthReport]]:
        async def check(_lab_id: int) -> HealthReport:
            return await self._check(ctx)

        return check

    async def health(self, lab_id: int) -> HealthReport:
        """Run every health check of a lab now, store the results and the verdict."""
        ctx = await self._context(lab_id)
        try:
            return await self._check(ctx)
        finally:
            await ctx.connections.close()

    async def _check(self, ctx: LabContext) -> HealthReport:
        steps = LabSteps(ctx, self.outer, None)
        lab = await ctx.lab()
        results = await run_checks(ctx, self.outer, steps.ssh, steps.nested, skip=unbuilt_checks(lab_view(lab)))
        failing = [r.name for r in results if not r.ok]
        async with self.sessions() as session, session.begin():
            await repo.add_health_checks(
                session=session,
                lab_id=ctx.lab_id,
                results=[
                    HealthCheck(check=r.name, ok=r.ok, latency_ms=r.latency_ms, detail=r.detail, at=utcnow())
                    for r in results
                ],
            )
        lab = await ctx.update(
            health="degraded" if failing else "ok", health_checked_at=utcnow(), health_failing=failing
        )
        return HealthReport(lab_view(lab), tuple(results))

    # --- warm pool -----------------------------------------------------------------------------------

    async def hand_over(self, lab_id: int, new_name: str) -> None:
        """Make a warm-pool lab someone's: fresh root passwords on VM1 and VM2 (also where the nested ZStack keeps
        VM2's login), and the platform's VM and volume names after the lab's new name."""
        ctx = await self._context(lab_id)
        lab = await ctx.lab()
        steps = LabSteps(ctx, self.outer, None)
        password = SecretStr(secrets.token_urlsafe(18))
        try:
            ssh = await steps.ssh()
            line = quote(f"root:{password.get_secret_value()}")
            for target in ("vm1", "vm2"):
                await ssh.run(target, f"echo {line} | chpasswd", timeout=30)
            ids = lab.nested_ids or {}
            if ids.get("host") or ids.get("backup_storage"):
                nested = await steps.nested()
                if ids.get("host"):
                    await nested.call("UpdateKVMHost", {"uuid": ids["host"], "password": password.get_secret_value()})
                if ids.get("backup_storage"):
                    await nested.call(
                        "UpdateImageStoreBackupStorage",
                        {"uuid": ids["backup_storage"], "password": password.get_secret_value()},
                    )
            await ctx.update(host_password_enc=self.box.encrypt(password))
            prefix = self.settings.resource_prefix
            for role, uuid in (("vm1", lab.vm1_uuid), ("vm2", lab.vm2_uuid)):
                if uuid:
                    await self.outer.compute.rename_vm(uuid, f"{prefix}-{new_name}-{role}")
            if lab.volume_uuid:
                await self.outer.compute.rename_volume(lab.volume_uuid, f"{prefix}-{new_name}-data")
        finally:
            await ctx.connections.close()

    # --- baked VM2 -----------------------------------------------------------------------------------

    async def bake(self, lab_id: int, image_name: str, progress: Progress) -> BakedImage:
        """Make an image of the lab's VM2 with its installed ZStack (``build.bake``); the lab works after."""
        ctx = await self._context(lab_id)
        try:
            return await bake_vm2(LabSteps(ctx, self.outer, None), self.outer, image_name=image_name,
                                  progress=progress)
        finally:
            await ctx.connections.close()

    # --- exercise ------------------------------------------------------------------------------------

    async def check_exercise(self, lab_id: int) -> list[TaskResult]:
        """Check an exercise lab's tasks on its machines (read only) and return each verdict."""
        ctx = await self._context(lab_id)
        lab = await ctx.lab()
        if lab.exercise_start is None:
            raise ConflictError(_("lab `{name}` is not an exercise lab").format(name=lab.name))
        steps = LabSteps(ctx, self.outer, None)
        facts = LabFacts(
            volume_uuid=lab.volume_uuid or "",
            vm1_vpc_ip=lab.vm1_vpc_ip or "",
            vm2_ip=lab.vm2_ip or "",
            iscsi_iqn=lab.iscsi_iqn,
            iscsi_wwid=lab.iscsi_wwid,
            nested_ids=dict(lab.nested_ids or {}),
        )
        checker = ExerciseChecker(profile=ctx.profile, facts=facts, ssh=steps.ssh, nested=steps.nested)
        try:
            return await checker.check(student_steps(lab.exercise_start))
        finally:
            await ctx.connections.close()

    # --- destroy -------------------------------------------------------------------------------------

    async def destroy(self, lab_id: int, attention: asyncio.Event) -> None:
        """Tear the lab down from any state and verify nothing is left; failures back off and retry."""
        ctx = await self._context(lab_id)
        lab = await ctx.lab()
        try:
            await self._teardown(ctx)
        except Exception as err:
            attempts = lab.destroy_attempts + 1
            error = describe_error(err)
            log.warning(
                "destroy of lab %s failed (attempt %d): %s",
                lab.name,
                attempts,
                error,
                exc_info=not isinstance(err, ExternalError),
            )
            if attempts >= MAX_DESTROY_ATTEMPTS:
                await self.lifecycle.move(
                    lab_id,
                    LabState.FAILED,
                    notice=NoticeKind.DESTROY_FAILED,
                    detail=_("destroy failed {attempts} times: {error}; `/lab retry {name}` tries again").format(
                        attempts=attempts, error=error, name=lab.name
                    ),
                    fields={"failed_step": "destroy", "error": error, "destroy_attempts": attempts},
                )
            else:
                delay = destroy_backoff(self.settings, attempts)
                await self.lifecycle.move(
                    lab_id,
                    LabState.DESTROYING,
                    notice=NoticeKind.DESTROY_FAILED,
                    retry_after=delay,
                    detail=_("destroy attempt {attempts} failed: {error}; retrying in {delay}").format(
                        attempts=attempts, error=error, delay=delay
                    ),
                    fields={"error": error, "destroy_attempts": attempts},
                )
            return
        finally:
            await ctx.connections.close()
        await self.host_keys.forget(lab.uuid)
        await self.lifecycle.move(
            lab_id,
            LabState.DESTROYED,
            notice=NoticeKind.DESTROYED,
            detail=_("every VM, volume and network of the lab is gone from the lab platform"),
            fields={
                "ssh_private_key_enc": None,
                "host_password_enc": None,
                "nested_password_enc": None,
                "chap_secret_enc": None,
                "error": None,
                "next_attempt_at": None,
                "lease_owner": None,
                "lease_expires_at": None,
            },
        )

    async def _stop_image_server(self, ctx: LabContext) -> None:
        """Stop VM1's nested-image server and close its port before VM1 goes. Best effort, bounded: an
        unreachable VM1 must not hold up the destroy, and the server ends with VM1 anyway."""
        async with ctx.sessions() as session:
            states = {s.name: s.state for s in await repo.list_steps(session=session, lab_id=ctx.lab_id)}
        lab = await ctx.lab()
        if states.get("serve_image", StepState.PENDING) == StepState.PENDING or not lab.ssh_private_key_enc:
            return
        try:
            async with asyncio.timeout(IMAGE_SERVER_STOP_SECONDS):
                await stop_image_server(await LabSteps(ctx, self.outer, None).ssh())
            await ctx.output("serve_image", "image server stopped (lab destroyed)\n")
        except Exception as err:  # whatever went wrong, VM1 is expunged next
            log.info("lab %s: image server not stopped (%s); it goes with VM1", ctx.lab_name, describe_error(err))

    async def _teardown(self, ctx: LabContext) -> None:
        """Reverse order: VM2, the data volume, VM1, the lab network (L3, then L2); then whatever else carries
        the lab's tag; then verify."""
        vm1, vm2 = ctx.resource_uuid("vm1"), ctx.resource_uuid("vm2")
        volume = ctx.resource_uuid("data-volume")
        l3, l2 = ctx.resource_uuid("lab-l3"), ctx.resource_uuid("lab-l2")
        await self._stop_image_server(ctx)
        await self.outer.compute.expunge_vm(vm2)
        await self.outer.compute.expunge_data_volume(volume)
        await self.outer.compute.expunge_vm(vm1)
        for vm in await self.outer.compute.find_vms_by_user_tag(ctx.tag):
            await self.outer.compute.expunge_vm(vm.uuid)
        for vol in await self.outer.compute.find_volumes_by_user_tag(ctx.tag):
            await self.outer.compute.expunge_data_volume(vol.uuid)
        await self.outer.network.delete_l3_network(l3)
        await self.outer.network.delete_l2_network(l2)
        for net in await self.outer.network.find_l3_networks_by_user_tag(ctx.tag):
            await self.outer.network.delete_l3_network(net.uuid)
        for l2net in await self.outer.network.find_l2_networks_by_user_tag(ctx.tag):
            await self.outer.network.delete_l2_network(l2net.uuid)
        leftovers = [u for u in (vm1, vm2) if await self.outer.compute.get_vm(u) is not None]
        if await self.outer.compute.get_volume(volume) is not None:
            leftovers.append(volume)
        if await self.outer.network.get_l3_network(l3) is not None:
            leftovers.append(l3)
        if await self.outer.network.get_l2_network(l2) is not None:
            leftovers.append(l2)
        leftovers += [v.uuid for v in await self.outer.compute.find_vms_by_user_tag(ctx.tag)]
        leftovers += [v.uuid for v in await self.outer.compute.find_volumes_by_user_tag(ctx.tag)]
        leftovers += [n.uuid for n in await self.outer.network.find_l3_networks_by_user_tag(ctx.tag)]
        leftovers += [n.uuid for n in await self.outer.network.find_l2_networks_by_user_tag(ctx.tag)]
        if leftovers:
            raise ExternalError(
                _("the lab platform still holds {join} after destroy").format(join=", ".join(sorted(set(leftovers))))
            )

    async def notify_health_change(self, report: HealthReport, previous: str) -> None:
        """Announce a health verdict that changed (used by the scheduler's health job)."""
        text = "recovered" if report.healthy else _("degraded: ") + ", ".join(report.failing)
        await self.notifier.notify(
            Notice(NoticeKind.HEALTH_CHANGED, report.lab, text=text, details={"previous": previous})
        )
