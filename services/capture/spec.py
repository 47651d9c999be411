"""What a capture is asked to do, and the hard limits no request can lift."""

from __future__ import annotations

from dataclasses import dataclass

from services.i18n import _

FLOWS = ("iscsi", "ui", "api")
CHOICES = (*FLOWS, "all")

DEFAULT_SECONDS = 10
MAX_SECONDS = 120
DEFAULT_PACKETS = 2000
MAX_PACKETS = 10_000  # decoding is pure Python: about 1,000 packets per CPU-second on the CI machine
MAX_BYTES = 20 * 1024 * 1024  # per capture, on VM1 and in labbot
KEEP_PER_LAB = 5  # captures kept per lab (the oldest go first); all go with the lab


@dataclass(frozen=True)
class CaptureSpec:
    """One capture: which flows, for how long, how many packets, and whether labbot makes iSCSI traffic."""

    flows: str = "iscsi"
    seconds: int = DEFAULT_SECONDS
    packets: int = DEFAULT_PACKETS
    exercise_io: bool = False
    max_bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        if self.flows not in CHOICES:
            raise ValueError(_("unknown flow {flows!r}").format(flows=self.flows))
        if not 1 <= self.seconds <= MAX_SECONDS or not 1 <= self.packets <= MAX_PACKETS:
            raise ValueError(_("capture limits out of range"))
        if not 1024 <= self.max_bytes <= MAX_BYTES:
            raise ValueError(_("capture byte limit out of range"))

    @property
    def flow_keys(self) -> tuple[str, ...]:
        """The flows captured (``all``: every one)."""
        return FLOWS if self.flows == "all" else (self.flows,)
