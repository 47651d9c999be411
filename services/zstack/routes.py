"""The route table: every ZStack API labbot calls, declared once, as ZStack 5.2.1's SDK declares it.

Each row is what the SDK's ``Action.getRestInfo()`` says (method, path under ``/zstack/v1``, whether it needs a
session, whether it is async, and the JSON body key), so a typo here is caught by the test that compares this
table with ``zstack-sdk-routes.tsv``. The simulator serves exactly these routes.

``python -m services.zstack.routes`` prints the table as TSV with the reference file's first six columns.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

log = logging.getLogger(__name__)

Method = Literal["GET", "POST", "PUT", "DELETE"]
_VAR = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """One API: ``body_key`` is the JSON key of the request body (None = parameters go in the URL)."""

    action: str
    method: Method
    path: str
    need_session: bool
    need_poll: bool
    body_key: str | None
    get_path: str | None = None  # the query's optional ``/<resources>/{uuid}`` path, when ZStack has one

    @property
    def path_vars(self) -> tuple[str, ...]:
        """Names of the ``{vars}`` in the path, in order."""
        return tuple(_VAR.findall(self.path))

    @property
    def is_query(self) -> bool:
        """Whether this is a standard Query API (``q``/``limit``/``start``... in the query string)."""
        return self.action.startswith("Query") and self.method == "GET"

    @property
    def mutating(self) -> bool:
        """Whether the request changes state (it then carries its own X-Job-UUID)."""
        return self.method != "GET"

    def render_path(self, values: dict[str, str]) -> str:
        """The path with each ``{var}`` replaced by its URL-quoted value; a missing or unsafe value raises."""

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            value = values.get(name)
            if not value or "/" in value or value in {".", ".."}:
                raise ValueError(f"{self.action}: path variable {name!r} must be a non-empty uuid, got {value!r}")
            return quote(value, safe="")

        return _VAR.sub(fill, self.path)

    def tsv(self) -> str:
        """This route as one TSV line in the reference file's column order (first six columns)."""
        body = "" if self.body_key is None else self.body_key
        return "\t".join(
            [self.action, self.method, self.path, str(self.need_session), str(self.need_poll), body]
        )


def _r(action: str, method: Method, path: str, session: bool, poll: bool, body: str | None,
       get_path: str | None = None) -> Route:
    return Route(action, method, path, session, poll, body, get_path)


_P = "params"

ROUTES: dict[str, Route] = {
    r.action: r
    for r in [
        # identity and management node
        _r("LogInByAccount", "PUT", "/accounts/login", False, False, "logInByAccount"),
        _r("LogOut", "DELETE", "/accounts/sessions/{sessionUuid}", False, False, None),
        _r("ValidateSession", "GET", "/accounts/sessions/{sessionUuid}/valid", False, False, None),
        _r("GetVersion", "PUT", "/management-nodes/actions", False, False, "getVersion"),
        _r("GetCurrentTime", "PUT", "/management-nodes/actions", False, False, "getCurrentTime"),
        _r("IsReadyToGo", "GET", "/management-nodes/ready", False, False, None),
        _r("QueryManagementNode", "GET", "/management-nodes", True, False, None, "/management-nodes/{uuid}"),
        _r("UpdateAccount", "PUT", "/accounts/{uuid}", True, True, "updateAccount"),
        # zones, clusters, hosts
        _r("CreateZone", "POST", "/zones", True, True, _P),
        _r("QueryZone", "GET", "/zones", True, False, None, "/zones/{uuid}"),
        _r("CreateCluster", "POST", "/clusters", True, True, _P),
        _r("QueryCluster", "GET", "/clusters", True, False, None, "/clusters/{uuid}"),
        _r("AddKVMHost", "POST", "/hosts/kvm", True, True, _P),
        _r("UpdateKVMHost", "PUT", "/hosts/kvm/{uuid}/actions", True, True, "updateKVMHost"),
        _r("QueryHost", "GET", "/hosts", True, False, None, "/hosts/{uuid}"),
        _r("ReconnectHost", "PUT", "/hosts/{uuid}/actions", True, True, "reconnectHost"),
        _r("GetCpuMemoryCapacity", "GET", "/hosts/capacities/cpu-memory", True, False, None),
        # iSCSI and SharedBlock
        _r("AddIscsiServer", "POST", "/storage-devices/iscsi/servers", True, True, _P),
        _r("AttachIscsiServerToCluster", "POST", "/clusters/{clusterUuid}/storage-devices/iscsi/servers/{uuid}",
           True, True, _P),
        _r("QueryIscsiServer", "GET", "/storage-devices/iscsi/servers", True, False, None,
           "/storage-devices/iscsi/servers/{uuid}"),
        _r("QueryIscsiLun", "GET", "/storage-devices/iscsi/luns", True, False, None),
        _r("GetSharedBlockCandidate", "GET", "/primary-storage/sharedblockgroup/sharedblock-candidates",
           True, False, None),
        _r("AddSharedBlockGroupPrimaryStorage", "POST", "/primary-storage/sharedblockgroup", True, True, _P),
        _r("QuerySharedBlockGroupPrimaryStorage", "GET", "/primary-storage/sharedblockgroup", True, False, None),
        _r("QuerySharedBlock", "GET", "/sharedblock-group/sharedblocks", True, False, None),
        # primary and backup storage, images
        _r("AttachPrimaryStorageToCluster", "POST", "/clusters/{clusterUuid}/primary-storage/{primaryStorageUuid}",
           True, True, _P),
        _r("QueryPrimaryStorage", "GET", "/primary-storage", True, False, None),
        _r("GetPrimaryStorageCapacity", "GET", "/primary-storage/capacities", True, False, None),
        _r("AddImageStoreBackupStorage", "POST", "/backup-storage/image-store", True, True, _P),
        _r("UpdateImageStoreBackupStorage", "PUT", "/backup-storage/image-store/{uuid}/actions", True, True,
           "updateImageStoreBackupStorage"),
        _r("AttachBackupStorageToZone", "POST", "/zones/{zoneUuid}/backup-storage/{backupStorageUuid}",
           True, True, _P),
        _r("QueryBackupStorage", "GET", "/backup-storage", True, False, None, "/backup-storage/{uuid}"),
        _r("AddImage", "POST", "/images", True, True, _P),
        _r("CreateRootVolumeTemplateFromRootVolume", "POST",
           "/images/root-volume-templates/from/volumes/{rootVolumeUuid}", True, True, _P),
        _r("QueryImage", "GET", "/images", True, False, None, "/images/{uuid}"),
        _r("DeleteImage", "DELETE", "/images/{uuid}", True, True, None),
        _r("ExpungeImage", "PUT", "/images/{imageUuid}/actions", True, True, "expungeImage"),
        # networks
        _r("CreateL2NoVlanNetwork", "POST", "/l2-networks/no-vlan", True, True, _P),
        _r("AttachL2NetworkToCluster", "POST", "/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}",
           True, True, "null"),
        _r("QueryL2Network", "GET", "/l2-networks", True, False, None, "/l2-networks/{uuid}"),
        _r("CreateL2VxlanNetwork", "POST", "/l2-networks/vxlan", True, True, _P),
        _r("DeleteL2Network", "DELETE", "/l2-networks/{uuid}", True, True, None),
        _r("DeleteL3Network", "DELETE", "/l3-networks/{uuid}", True, True, None),
        _r("CreateL3Network", "POST", "/l3-networks", True, True, _P),
        _r("QueryL3Network", "GET", "/l3-networks", True, False, None, "/l3-networks/{uuid}"),
        _r("AddIpRange", "POST", "/l3-networks/{l3NetworkUuid}/ip-ranges", True, True, _P),
        _r("QueryIpRange", "GET", "/l3-networks/ip-ranges", True, False, None, "/l3-networks/ip-ranges/{uuid}"),
        _r("AttachNetworkServiceToL3Network", "POST", "/l3-networks/{l3NetworkUuid}/network-services",
           True, True, _P),
        _r("QueryNetworkServiceProvider", "GET", "/network-services/providers", True, False, None),
        # offerings
        _r("CreateInstanceOffering", "POST", "/instance-offerings", True, True, _P),
        _r("QueryInstanceOffering", "GET", "/instance-offerings", True, False, None, "/instance-offerings/{uuid}"),
        _r("DeleteInstanceOffering", "DELETE", "/instance-offerings/{uuid}", True, True, None),
        _r("CreateDiskOffering", "POST", "/disk-offerings", True, True, _P),
        _r("QueryDiskOffering", "GET", "/disk-offerings", True, False, None, "/disk-offerings/{uuid}"),
        # VMs and volumes
        _r("CreateVmInstance", "POST", "/vm-instances", True, True, _P),
        _r("QueryVmInstance", "GET", "/vm-instances", True, False, None, "/vm-instances/{uuid}"),
        _r("QueryVmNic", "GET", "/vm-instances/nics", True, False, None, "/vm-instances/nics/{uuid}"),
        _r("StartVmInstance", "PUT", "/vm-instances/{uuid}/actions", True, True, "startVmInstance"),
        _r("StopVmInstance", "PUT", "/vm-instances/{uuid}/actions", True, True, "stopVmInstance"),
        _r("DestroyVmInstance", "DELETE", "/vm-instances/{uuid}", True, True, None),
        _r("ExpungeVmInstance", "PUT", "/vm-instances/{uuid}/actions", True, True, "expungeVmInstance"),
        _r("UpdateVmInstance", "PUT", "/vm-instances/{uuid}/actions", True, True, "updateVmInstance"),
        _r("CreateDataVolume", "POST", "/volumes/data", True, True, _P),
        _r("AttachDataVolumeToVm", "POST", "/volumes/{volumeUuid}/vm-instances/{vmInstanceUuid}", True, True, _P),
        _r("DetachDataVolumeFromVm", "DELETE", "/volumes/{uuid}/vm-instances", True, True, None),
        _r("DeleteDataVolume", "DELETE", "/volumes/{uuid}", True, True, None),
        _r("ExpungeDataVolume", "PUT", "/volumes/{uuid}/actions", True, True, "expungeDataVolume"),
        _r("UpdateVolume", "PUT", "/volumes/{uuid}/actions", True, True, "updateVolume"),
        _r("QueryVolume", "GET", "/volumes", True, False, None, "/volumes/{uuid}"),
        # resource configuration (a global config bound to one resource, e.g. kvm/vm.cpuMode on a VM)
        _r("UpdateResourceConfig", "PUT", "/resource-configurations/{category}/{name}/{resourceUuid}/actions",
           True, True, "updateResourceConfig"),
        _r("GetResourceConfig", "GET", "/resource-configurations/{resourceUuid}/{category}/{name}", True, False,
           None),
        # tags
        _r("CreateUserTag", "POST", "/user-tags", True, True, _P),
        _r("QueryUserTag", "GET", "/user-tags", True, False, None),
        _r("QuerySystemTag", "GET", "/system-tags", True, False, None),
        _r("DeleteTag", "DELETE", "/tags/{uuid}", True, True, None),
    ]
}

API_JOBS_PATH = "/api-jobs"


def route(action: str) -> Route:
    """The declared route of ``action``; an undeclared action is a programming error (KeyError)."""
    try:
        return ROUTES[action]
    except KeyError:
        raise KeyError(f"ZStack action {action!r} is not in services.zstack.routes.ROUTES") from None


def render_tsv() -> str:
    """The whole table as TSV with a header line, sorted by action name."""
    header = "action\tmethod\tpath\tneedSession\tneedPoll\tparameterName"
    return "\n".join([header, *(ROUTES[name].tsv() for name in sorted(ROUTES))]) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_tsv())
