"""``labbot doctor``: a preflight for the admin who sets labbot up, against the configured platform and profile.

Everything that can be checked before a lab is built, one line per check, each either ok (with what was found)
or a problem (with what to do): the platform answers and the login works; the profile's images, offerings and
networks fit (``services.labs.preflight``: root-volume templates of the right architecture, an offering big
enough for the ZStack installer, a default L3 with the Userdata service); nested virtualisation can be
arranged; the local files the profile names exist; the database is migrated; the quotas make sense and the
platform has room for a lab now. The Slack check lives with the Slack front end (``bot.cli_doctor``), since
services never talk to Slack. Nothing here changes the platform or the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config.profiles import LabProfile
from config.settings import Settings
from services import db
from services.errors import LabbotError
from services.i18n import _
from services.labs import repository as repo
from services.labs.capacity import check_capacity
from services.labs.preflight import Check, check_platform
from services.zstack.client import ZStackClient
from services.zstack.errors import ZStackAuthError, ZStackError

log = logging.getLogger(__name__)

PLATFORM_VARIABLES = "LABBOT_PLATFORM_URL, LABBOT_PLATFORM_ACCOUNT and LABBOT_PLATFORM_PASSWORD"


async def run_doctor(settings: Settings, profiles: dict[str, LabProfile], profile_name: str | None, *,
                     outer: ZStackClient, sessions: async_sessionmaker[AsyncSession] | None = None,
                     engine: AsyncEngine | None = None) -> list[Check]:
    """Every check of ``labbot doctor`` for one profile (the default one when ``profile_name`` is None)."""
    checks: list[Check] = []
    name = profile_name or settings.default_profile
    profile = profiles.get(name)
    if profile is None:
        checks.append(
            Check(
                "profile",
                False,
                _("there is no profile `{name}` in {profiles_dir} (profiles: {value}): add it or pick another").format(
                    name=name, profiles_dir=settings.profiles_dir, value=", ".join(sorted(profiles)) or "none"
                ),
            )
        )
    else:
        checks.append(
            Check(
                "profile",
                True,
                _("profile `{name}` loaded from {profiles_dir}").format(name=name, profiles_dir=settings.profiles_dir),
            )
        )
        checks.extend(_profile_files(profile))
    reachable = await _platform(outer, settings, checks)
    if profile is not None:
        if reachable:
            report = await check_platform(outer, profile)
            checks.extend(report.checks)
            checks.append(await _capacity(outer, profile))
        else:
            checks.append(
                Check(
                    "platform_checks",
                    False,
                    _(
                        "images, offerings, networks and capacity were "
                        "not checked because the platform is "
                        "unreachable: fix that first"
                    ),
                )
            )
        checks.append(_nested_virtualisation(profile))
    if engine is not None:
        checks.append(await _database(engine))
    checks.append(await _quotas(settings, sessions))
    return checks


async def _platform(outer: ZStackClient, settings: Settings, checks: list[Check]) -> bool:
    try:
        await outer.login()
        version = await outer.get_version()
    except ZStackAuthError as err:
        checks.append(
            Check(
                "platform",
                False,
                _(
                    "{platform_url} refused the login of `{platform_account}` ({value}): check {PLATFORM_VARIABLES}"
                ).format(
                    platform_url=settings.platform_url,
                    platform_account=settings.platform_account,
                    value=err.details or err.code,
                    PLATFORM_VARIABLES=PLATFORM_VARIABLES,
                ),
            )
        )
        return False
    except ZStackError as err:
        checks.append(
            Check(
                "platform",
                False,
                _(
                    "cannot use the lab platform at {platform_url}: {err}; "
                    "check {PLATFORM_VARIABLES} and that the management node "
                    "runs"
                ).format(platform_url=settings.platform_url, err=err, PLATFORM_VARIABLES=PLATFORM_VARIABLES),
            )
        )
        return False
    checks.append(
        Check(
            "platform",
            True,
            _("ZStack {version} at {platform_url}, logged in as `{platform_account}`").format(
                version=version, platform_url=settings.platform_url, platform_account=settings.platform_account
            ),
        )
    )
    return True


def _nested_virtualisation(profile: LabProfile) -> Check:
    mode = profile.vm2.cpu_mode
    if mode is None:
        return Check(
            "nested_virtualisation",
            False,
            _(
                "profile {name} does not set vm2.cpu_mode, so VM2 gets vmx/svm only if the platform's "
                "global config kvm/vm.cpuMode passes it through (default `none`): set `vm2.cpu_mode: "
                "host-passthrough` and labbot sets it on VM2 (UpdateResourceConfig)"
            ).format(name=profile.name),
        )
    return Check(
        "nested_virtualisation",
        True,
        _(
            "VM2 is created stopped with kvm/vm.cpuMode={mode}, then started; its vmx/svm is checked "
            "as soon as SSH works (the platform's hosts must allow nested KVM)"
        ).format(mode=mode),
    )


def _profile_files(profile: LabProfile) -> list[Check]:
    """Local files the profile names: the installer when labbot uploads it, the nested image when served."""
    found: list[Check] = []
    install = profile.install
    if install.upload:  # then exactly one local file (the profile's own check)
        found.append(_local_file("installer", install.installer_patterns[0], "install.installer"))
    image = profile.nested.image
    for field_name in ("file", "local_file", "path"):
        value = getattr(image, field_name, None)
        if isinstance(value, str | Path) and value:
            found.append(_local_file("nested_image", value, f"nested.image.{field_name}"))
    return found


def _local_file(name: str, value: str | Path, setting: str) -> Check:
    path = Path(value) if Path(value).is_absolute() else db.PROJECT_ROOT / value
    if path.is_file():
        return Check(
            name,
            True,
            _("{setting} {path} exists ({st_size} bytes)").format(
                setting=setting, path=path, st_size=path.stat().st_size
            ),
        )
    return Check(
        name,
        False,
        _("{setting} {path} does not exist: put the file there or change {setting}").format(setting=setting, path=path),
    )


async def _capacity(outer: ZStackClient, profile: LabProfile) -> Check:
    try:
        await check_capacity(outer, profile)
    except LabbotError as err:
        return Check("capacity", False, err.user_message)
    except ZStackError as err:
        return Check("capacity", False, _("could not read the platform's hosts: {err}").format(err=err))
    return Check("capacity", True, _("the platform has room for a `{name}` lab now").format(name=profile.name))


async def _database(engine: AsyncEngine) -> Check:
    try:
        await db.require_migrated(engine)
    except LabbotError as err:
        return Check("database", False, err.user_message)
    except Exception as err:  # any driver error: the database cannot be used, which is this check's finding
        return Check(
            "database",
            False,
            _("cannot use the database: {name}: {value}; check LABBOT_DATABASE_URL").format(
                name=type(err).__name__, value=str(err)[:200]
            ),
        )
    return Check("database", True, _("migrated to revision {head_revision}").format(head_revision=db.head_revision()))


async def _quotas(settings: Settings, sessions: async_sessionmaker[AsyncSession] | None) -> Check:
    per_user, total = settings.max_labs_per_user, settings.max_labs_total
    if per_user > total:
        return Check(
            "quotas",
            False,
            _(
                "LABBOT_MAX_LABS_PER_USER ({per_user}) is above "
                "LABBOT_MAX_LABS_TOTAL ({total}): lower it or raise the total"
            ).format(per_user=per_user, total=total),
        )
    live = None
    if sessions is not None:
        try:
            async with sessions() as session:
                live = await repo.count_live(session=session)
        except Exception as err:  # reported by the database check; the quota line still says the limits
            log.debug("doctor could not count live labs: %s", err)
    if live is not None and live >= total:
        return Check(
            "quotas",
            False,
            _("{live} live labs already reach LABBOT_MAX_LABS_TOTAL ({total}): destroy some or raise the limit").format(
                live=live, total=total
            ),
        )
    now = _(", {live} live now").format(live=live) if live is not None else ""
    return Check(
        "quotas",
        True,
        _("{per_user} labs per person, {total} in all{now}").format(per_user=per_user, total=total, now=now),
    )


def render(checks: Iterable[Check]) -> list[str]:
    """One line per check: ``ok      name: detail`` or ``PROBLEM name: detail``."""
    return [f"{'ok' if c.ok else 'PROBLEM':<8}{c.name}: {c.detail}" for c in checks]
