"""The command grammar everyone types, in Slack (``/lab ...``) and in the console: text in, typed command out.

``parse_command`` never raises anything but CommandError, whose message says what was wrong and shows the
right usage (property-tested with hypothesis).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta

from config.settings import parse_duration
from services.capture.spec import CHOICES, DEFAULT_PACKETS, DEFAULT_SECONDS, MAX_PACKETS, MAX_SECONDS, CaptureSpec
from services.errors import CommandError
from services.i18n import N_, Texts, _

LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,29}[a-z0-9]$")
PROFILE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")
STEP_NAME = re.compile(r"^[a-z][a-z0-9_]{1,47}$")

USAGE: dict[str, str] = {
    "create": "/lab create [NAME] [--ttl DURATION] [--profile NAME] [--exercise [--from STEP]]",
    "list": "/lab list [--all]",
    "status": "/lab status NAME",
    "destroy": "/lab destroy NAME [--yes]",
    "extend": "/lab extend NAME [DURATION]",
    "health": "/lab health NAME",
    "retry": "/lab retry NAME",
    "logs": "/lab logs NAME [STEP]",
    "access": "/lab access NAME",
    "check": "/lab check NAME",
    "solve": "/lab solve NAME STEP",
    "class": "/lab class create|status|claim|extend|destroy CLASS ...",
    "pool": "/lab pool status",
    "doctor": "/lab doctor [--profile NAME]",
    "picture": "/lab picture NAME",
    "capture": "/lab capture NAME [iscsi|ui|api|all] [--seconds S] [--packets N] [--exercise-io]",
    "help": "/lab help [COMMAND]",
}

CLASS_USAGE: dict[str, str] = {
    "create": "/lab class create CLASS --count N [--for @a @b ...] [--exercise [--from STEP]] [--ttl DURATION] "
              "[--profile NAME]",
    "status": "/lab class status CLASS",
    "claim": "/lab class claim CLASS",
    "extend": "/lab class extend CLASS DURATION",
    "destroy": "/lab class destroy CLASS [--yes]",
}

HELP = Texts({
    "create": N_("build a new lab (with no arguments in Slack: a form)"),
    "list": N_("your live labs (--all: everyone's, and destroyed ones)"),
    "status": N_("state, steps and expiry of a lab"),
    "destroy": N_("tear a lab down (--yes skips the confirmation)"),
    "extend": N_("push a lab's expiry out (default: the profile's TTL)"),
    "health": N_("run the health checks now"),
    "retry": N_("re-run a failed lab from its failed step"),
    "logs": N_("the output tail of a lab's steps"),
    "access": N_("how to reach VM1, VM2 and the ZStack UI (sent privately)"),
    "check": N_("check an exercise lab's remaining steps on the real machines (changes nothing)"),
    "solve": N_("let labbot do an exercise step (and any earlier one not done) for you"),
    "class": N_("trainers: labs for a whole class (create, status, extend, destroy); students: claim one"),
    "pool": N_("admins: the warm pools (labs kept ready for `/lab create`): target, ready, building, failed"),
    "doctor": N_("admins: check the lab platform and a profile before building labs"),
    "picture": N_("the lab's diagram (VMs, iSCSI target, nested ZStack, flows), posted in its thread"),
    "capture": N_("a short packet capture on VM1 (owner or admin), posted with a summary in the lab's thread"),
    "help": N_("this help"),
})


@dataclass(frozen=True)
class CreateCommand:
    name: str | None = None
    ttl: timedelta | None = None
    profile: str | None = None
    exercise: bool = False
    start: str | None = None  # with ``exercise``: the first step the student does (else the profile's)


@dataclass(frozen=True)
class ListCommand:
    all: bool = False


@dataclass(frozen=True)
class StatusCommand:
    name: str


@dataclass(frozen=True)
class DestroyCommand:
    name: str
    yes: bool = False


@dataclass(frozen=True)
class ExtendCommand:
    name: str
    duration: timedelta | None = None


@dataclass(frozen=True)
class HealthCommand:
    name: str


@dataclass(frozen=True)
class RetryCommand:
    name: str


@dataclass(frozen=True)
class LogsCommand:
    name: str
    step: str | None = None


@dataclass(frozen=True)
class AccessCommand:
    name: str


@dataclass(frozen=True)
class CheckCommand:
    name: str


@dataclass(frozen=True)
class SolveCommand:
    name: str
    step: str


@dataclass(frozen=True)
class ClassCreateCommand:
    name: str
    count: int
    students: tuple[str, ...] = ()
    exercise: bool = False
    start: str | None = None
    ttl: timedelta | None = None
    profile: str | None = None


@dataclass(frozen=True)
class DoctorCommand:
    profile: str | None = None


@dataclass(frozen=True)
class ClassStatusCommand:
    name: str


@dataclass(frozen=True)
class ClassClaimCommand:
    name: str


@dataclass(frozen=True)
class ClassExtendCommand:
    name: str
    duration: timedelta


@dataclass(frozen=True)
class ClassDestroyCommand:
    name: str
    yes: bool = False


@dataclass(frozen=True)
class PoolStatusCommand:
    pass


@dataclass(frozen=True)
class PictureCommand:
    name: str


@dataclass(frozen=True)
class CaptureCommand:
    name: str
    spec: CaptureSpec = field(default_factory=CaptureSpec)


@dataclass(frozen=True)
class HelpCommand:
    topic: str | None = None


Command = (
    CreateCommand
    | ListCommand
    | StatusCommand
    | DestroyCommand
    | ExtendCommand
    | HealthCommand
    | RetryCommand
    | LogsCommand
    | AccessCommand
    | CheckCommand
    | SolveCommand
    | ClassCreateCommand
    | ClassStatusCommand
    | ClassClaimCommand
    | ClassExtendCommand
    | ClassDestroyCommand
    | PoolStatusCommand
    | DoctorCommand
    | PictureCommand
    | CaptureCommand
    | HelpCommand
)

CLASS_NAME = re.compile(r"^[a-z][a-z0-9-]{0,26}[a-z0-9]$")  # + "-NN" stays a valid lab name (31 characters)
MAX_CLASS_SIZE = 99  # two digits in the lab names
# A Slack mention as Slack sends it in a slash command's text (``<@U123|name>``), or a bare user id.
_MENTION = re.compile(r"^<@([UW][A-Z0-9_]{2,20})(?:\|[^>]{0,80})?>$|^@?([UW][A-Z0-9_]{2,20})$")


def validate_lab_name(name: str, usage: str | None = None) -> str:
    """Return ``name`` if it is a valid lab name (a DNS label of 2-31 characters), else CommandError."""
    if not LAB_NAME.fullmatch(name):
        shown = name if len(name) <= 40 and name.isprintable() else repr(name[:40])
        raise CommandError(
            _("`{shown}` is not a valid lab name: use 2-31 lower-case letters, digits and hyphens, starting "
              "with a letter and not ending with a hyphen (it becomes part of VM names)").format(shown=shown),
            usage,
        )
    return name


def help_text(topic: str | None = None) -> str:
    """Usage of one command, or of all of them."""
    if topic is not None and topic in USAGE:
        return f"`{USAGE[topic]}`: {HELP[topic]}"
    return "\n".join(f"`{USAGE[verb]}`: {HELP[verb]}" for verb in USAGE)


def parse_command(text: str) -> Command:
    """Parse what follows ``/lab`` (a leading ``/lab`` is accepted too) into a typed command."""
    if len(text) > 1000:
        raise CommandError(_("that command is too long (1000 characters at most)"))
    try:
        words = shlex.split(text.replace("\u2014", "--").replace("\u2013", "--"))
    except ValueError as err:
        raise CommandError(_("could not read the command: {err}").format(err=err), USAGE["help"]) from None
    if words and words[0] == "/lab":
        words = words[1:]
    if not words:
        return HelpCommand()
    verb, args = words[0].lower(), words[1:]
    parser = _PARSERS.get(verb)
    if parser is None:
        known = ", ".join(USAGE)
        raise CommandError(_("unknown command `{verb}`; try one of: {known}").format(verb=verb[:30], known=known),
                           USAGE["help"])
    return parser(args)


def _options(args: list[str], verb: str, *, flags: set[str], valued: set[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``args`` into positionals and options (``--opt value`` or ``--opt=value``)."""
    usage = USAGE[verb]
    positionals: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            key, _sep, inline = arg[2:].partition("=")
            if key in options:
                raise CommandError(_("`--{value}` given twice").format(value=key[:30]), usage)
            if key in flags and not inline:
                options[key] = "yes"
            elif key in valued:
                if inline:
                    options[key] = inline
                elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                    i += 1
                    options[key] = args[i]
                else:
                    raise CommandError(_("`--{key}` needs a value").format(key=key), usage)
            else:
                raise CommandError(_("`{value}` is not an option of `{verb}`").format(value=arg[:30], verb=verb), usage)
        else:
            positionals.append(arg)
        i += 1
    return positionals, options


def _duration(text: str, verb: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError:
        raise CommandError(
            _("`{value}` is not a duration: use minutes, hours or days like 90m, 4h or 2d").format(value=text[:30]),
            USAGE[verb],
        ) from None


def _exactly_name(args: list[str], verb: str, *, flags: set[str] | None = None) -> tuple[str, dict[str, str]]:
    positionals, options = _options(args, verb, flags=flags or set(), valued=set())
    if not positionals:
        raise CommandError(_("`{verb}` needs the lab's name").format(verb=verb), USAGE[verb])
    if len(positionals) > 1:
        raise CommandError(
            _("`{verb}` takes one lab name, got {len} words").format(verb=verb, len=len(positionals)), USAGE[verb]
        )
    return validate_lab_name(positionals[0], USAGE[verb]), options


def _exercise_start(options: dict[str, str], usage: str) -> tuple[bool, str | None]:
    """``--exercise`` and its ``--from STEP`` (a step name; which steps a student may start at is the service's)."""
    start = options.get("from")
    if start is not None:
        if "exercise" not in options:
            raise CommandError(_("`--from` goes with `--exercise`"), usage)
        if not STEP_NAME.fullmatch(start):
            raise CommandError(_("`{value}` is not a step name").format(value=start[:30]), usage)
    return "exercise" in options, start


def _profile(options: dict[str, str], usage: str) -> str | None:
    profile = options.get("profile")
    if profile is not None and not PROFILE_NAME.fullmatch(profile):
        raise CommandError(_("`{value}` is not a profile name").format(value=profile[:30]), usage)
    return profile


def _parse_create(args: list[str]) -> Command:
    positionals, options = _options(args, "create", flags={"exercise"}, valued={"ttl", "profile", "from"})
    if len(positionals) > 1:
        raise CommandError(_("`create` takes at most one lab name"), USAGE["create"])
    name = validate_lab_name(positionals[0], USAGE["create"]) if positionals else None
    ttl = _duration(options["ttl"], "create") if "ttl" in options else None
    exercise, start = _exercise_start(options, USAGE["create"])
    return CreateCommand(name=name, ttl=ttl, profile=_profile(options, USAGE["create"]), exercise=exercise, start=start)


def _parse_solve(args: list[str]) -> Command:
    positionals, _options_given = _options(args, "solve", flags=set(), valued=set())
    if len(positionals) != 2:
        raise CommandError(_("`solve` takes a lab name and a step"), USAGE["solve"])
    name = validate_lab_name(positionals[0], USAGE["solve"])
    if not STEP_NAME.fullmatch(positionals[1]):
        raise CommandError(_("`{value}` is not a step name").format(value=positionals[1][:30]), USAGE["solve"])
    return SolveCommand(name=name, step=positionals[1])


def _parse_pool(args: list[str]) -> Command:
    if [a.lower() for a in args] != ["status"]:
        raise CommandError(_("`pool` takes one subcommand: status"), USAGE["pool"])
    return PoolStatusCommand()


def validate_class_name(name: str, usage: str) -> str:
    """``name`` if it is a valid class name (its labs are ``NAME-01`` ...), else CommandError."""
    if not CLASS_NAME.fullmatch(name):
        shown = name if len(name) <= 40 and name.isprintable() else repr(name[:40])
        raise CommandError(
            _(
                "`{shown}` is not a valid class name: use 2-28 lower-case letters, digits and "
                "hyphens, starting with a letter (its labs are named CLASS-01, CLASS-02, ...)"
            ).format(shown=shown),
            usage,
        )
    return name


def _student(word: str, usage: str) -> str:
    match = _MENTION.fullmatch(word)
    if match is None:
        shown = word if len(word) <= 40 and word.isprintable() else repr(word[:40])
        raise CommandError(_("`{shown}` is not a Slack user: mention students as @name").format(shown=shown), usage)
    return match.group(1) or match.group(2)


def _parse_class(args: list[str]) -> Command:
    if not args:
        raise CommandError(_("`class` needs a subcommand: ") + ", ".join(CLASS_USAGE), USAGE["class"])
    sub, rest = args[0].lower(), args[1:]
    usage = CLASS_USAGE.get(sub)
    if usage is None:
        raise CommandError(
            _("unknown class command `{value}`; try one of: {join}").format(
                value=sub[:30], join=", ".join(CLASS_USAGE)
            ),
            USAGE["class"],
        )
    if sub == "create":
        return _parse_class_create(rest, usage)
    flags = {"yes"} if sub == "destroy" else set()
    positionals, options = _options_for(rest, usage, f"class {sub}", flags=flags, valued=set())
    if not positionals:
        raise CommandError(_("`class {sub}` needs the class's name").format(sub=sub), usage)
    name = validate_class_name(positionals[0], usage)
    if sub == "extend":
        if len(positionals) != 2:
            raise CommandError(_("`class extend` takes the class's name and a duration"), usage)
        return ClassExtendCommand(name=name, duration=_duration_for(positionals[1], usage))
    if len(positionals) > 1:
        raise CommandError(
            _("`class {sub}` takes one class name, got {len} words").format(sub=sub, len=len(positionals)), usage
        )
    if sub == "status":
        return ClassStatusCommand(name=name)
    if sub == "claim":
        return ClassClaimCommand(name=name)
    return ClassDestroyCommand(name=name, yes="yes" in options)


def _parse_class_create(args: list[str], usage: str) -> Command:
    # ``--for`` takes every word after it up to the next option: the students.
    students: list[str] = []
    rest: list[str] = []
    collecting = False
    for arg in args:
        if arg == "--for":
            if collecting or students:
                raise CommandError(_("`--for` given twice"), usage)
            collecting = True
        elif collecting and not arg.startswith("--"):
            students.append(_student(arg, usage))
        else:
            collecting = False
            rest.append(arg)
    if collecting and not students:
        raise CommandError(_("`--for` needs at least one @student"), usage)
    positionals, options = _options_for(
        rest, usage, "class create", flags={"exercise"}, valued={"count", "ttl", "profile", "from"}
    )
    if len(positionals) != 1:
        raise CommandError(_("`class create` takes one class name"), usage)
    name = validate_class_name(positionals[0], usage)
    if "count" in options:
        if not options["count"].isdigit() or not 1 <= int(options["count"]) <= MAX_CLASS_SIZE:
            raise CommandError(
                _("`--count` must be a whole number from 1 to {MAX_CLASS_SIZE}").format(MAX_CLASS_SIZE=MAX_CLASS_SIZE),
                usage,
            )
        count = int(options["count"])
    elif students:
        count = len(students)
    else:
        raise CommandError(_("`class create` needs `--count N` (or `--for` with the students)"), usage)
    if len(set(students)) != len(students):
        raise CommandError(_("a student is named twice in `--for`"), usage)
    if len(students) > count:
        raise CommandError(
            _("{len} students named for {count} labs: raise `--count`").format(len=len(students), count=count), usage
        )
    ttl = _duration_for(options["ttl"], usage) if "ttl" in options else None
    exercise, start = _exercise_start(options, usage)
    return ClassCreateCommand(
        name=name,
        count=count,
        students=tuple(students),
        exercise=exercise,
        start=start,
        ttl=ttl,
        profile=_profile(options, usage),
    )


def _options_for(
    args: list[str], usage: str, verb: str, *, flags: set[str], valued: set[str]
) -> tuple[list[str], dict[str, str]]:
    try:
        return _options(args, "class", flags=flags, valued=valued)
    except CommandError as err:
        raise CommandError(err.message.replace("`class`", f"`{verb}`"), usage) from None


def _duration_for(text: str, usage: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError:
        raise CommandError(
            _("`{value}` is not a duration: use minutes, hours or days like 90m, 4h or 2d").format(value=text[:30]),
            usage,
        ) from None


def _parse_list(args: list[str]) -> Command:
    positionals, options = _options(args, "list", flags={"all"}, valued=set())
    if positionals:
        raise CommandError(_("`list` takes no lab name"), USAGE["list"])
    return ListCommand(all="all" in options)


def _parse_destroy(args: list[str]) -> Command:
    name, options = _exactly_name(args, "destroy", flags={"yes"})
    return DestroyCommand(name=name, yes="yes" in options)


def _parse_extend(args: list[str]) -> Command:
    positionals, _options_given = _options(args, "extend", flags=set(), valued=set())
    if not positionals or len(positionals) > 2:
        raise CommandError(_("`extend` takes a lab name and optionally a duration"), USAGE["extend"])
    name = validate_lab_name(positionals[0], USAGE["extend"])
    duration = _duration(positionals[1], "extend") if len(positionals) == 2 else None
    return ExtendCommand(name=name, duration=duration)


def _parse_logs(args: list[str]) -> Command:
    positionals, _options_given = _options(args, "logs", flags=set(), valued=set())
    if not positionals or len(positionals) > 2:
        raise CommandError(_("`logs` takes a lab name and optionally a step"), USAGE["logs"])
    name = validate_lab_name(positionals[0], USAGE["logs"])
    step = positionals[1] if len(positionals) == 2 else None
    if step is not None and not STEP_NAME.fullmatch(step):
        raise CommandError(_("`{value}` is not a step name").format(value=step[:30]), USAGE["logs"])
    return LogsCommand(name=name, step=step)


def _parse_doctor(args: list[str]) -> Command:
    positionals, options = _options(args, "doctor", flags=set(), valued={"profile"})
    if positionals:
        raise CommandError(_("`doctor` takes no lab name"), USAGE["doctor"])
    profile = options.get("profile")
    if profile is not None and not PROFILE_NAME.fullmatch(profile):
        raise CommandError(_("`{value}` is not a profile name").format(value=profile[:30]), USAGE["doctor"])
    return DoctorCommand(profile=profile)


def _bounded_int(text: str, option: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise CommandError(
            _("`--{option}` takes a whole number from {low} to {high}, not `{value}`").format(
                option=option, low=low, high=high, value=text[:30]
            ),
            USAGE["capture"],
        )
    return int(text)


def _parse_capture(args: list[str]) -> Command:
    positionals, options = _options(args, "capture", flags={"exercise-io"}, valued={"seconds", "packets"})
    if not positionals:
        raise CommandError(_("`capture` needs the lab's name"), USAGE["capture"])
    if len(positionals) > 2:
        raise CommandError(_("`capture` takes a lab name and optionally one of iscsi, ui, api, all"), USAGE["capture"])
    name = validate_lab_name(positionals[0], USAGE["capture"])
    flows = positionals[1].lower() if len(positionals) == 2 else "iscsi"
    if flows not in CHOICES:
        raise CommandError(
            _("`{value}` is not a flow: use one of {join}").format(value=positionals[1][:30], join=", ".join(CHOICES)),
            USAGE["capture"],
        )
    seconds = _bounded_int(options["seconds"], "seconds", 1, MAX_SECONDS) if "seconds" in options else DEFAULT_SECONDS
    packets = _bounded_int(options["packets"], "packets", 1, MAX_PACKETS) if "packets" in options else DEFAULT_PACKETS
    return CaptureCommand(
        name, CaptureSpec(flows=flows, seconds=seconds, packets=packets, exercise_io="exercise-io" in options)
    )


def _parse_help(args: list[str]) -> Command:
    if len(args) > 1:
        raise CommandError(_("`help` takes at most one command name"), USAGE["help"])
    topic = args[0].lower() if args else None
    if topic is not None and topic not in USAGE:
        raise CommandError(_("there is no command `{value}`").format(value=topic[:30]), USAGE["help"])
    return HelpCommand(topic=topic)


_PARSERS = {
    "create": _parse_create,
    "list": _parse_list,
    "ls": _parse_list,
    "status": lambda a: StatusCommand(_exactly_name(a, "status")[0]),
    "destroy": _parse_destroy,
    "delete": _parse_destroy,
    "extend": _parse_extend,
    "health": lambda a: HealthCommand(_exactly_name(a, "health")[0]),
    "retry": lambda a: RetryCommand(_exactly_name(a, "retry")[0]),
    "logs": _parse_logs,
    "access": lambda a: AccessCommand(_exactly_name(a, "access")[0]),
    "check": lambda a: CheckCommand(_exactly_name(a, "check")[0]),
    "solve": _parse_solve,
    "class": _parse_class,
    "pool": lambda a: _parse_pool(a),
    "doctor": _parse_doctor,
    "picture": lambda a: PictureCommand(_exactly_name(a, "picture")[0]),
    "capture": _parse_capture,
    "help": _parse_help,
}
