"""Drawing a lab's picture (``services.labs.picture.LabPicture``): a Graphviz PNG, and the same lab as a text tree.

The PNG is made with Graphviz through its Python binding (the ``graphviz`` package runs Debian's ``dot``).
Where Graphviz is missing or fails, ``render_png`` raises ``PictureUnavailable`` with the reason, and front ends
show the text tree with that note instead: a picture never fails a build or a command.
"""

from __future__ import annotations

import logging

from bot.blocks.format import state_word
from services.i18n import N_, Texts, _
from services.labs.picture import Flow, LabPicture

log = logging.getLogger(__name__)


# Every user-facing string of this module (one place, for the message catalogue).
TEXT = Texts({
    "computer": N_("Your computer\n(browser, ssh)"),
    "platform": N_("Lab platform (ZStack cloud)"),
    "vpc": N_("VPC {vpc}"),
    "vm1": N_("VM1: jump host and storage server\npublic {public} · VPC {vpc}"),
    "vm2": N_("VM2: ZStack management node\nVPC {vpc} (only through VM1)"),
    "role_access": N_("access entry\nsshd :{port}"),
    "role_iscsi": N_("iSCSI server ({backend})\n{iqn}\nLUN {lun} · wwid {wwid}\nportal {portal}"),
    "role_jump": N_("network jump host\n(ssh -J, ssh -L; no routing)"),
    "disk": N_("data disk\n{gb} GB volume"),
    "mn": N_("ZStack management node\nUI :{ui} · API :{api}"),
    "zone": N_("zone {zone}"),
    "cluster": N_("cluster {cluster}"),
    "host": N_("KVM host {host}\n(VM2 itself)"),
    "ps": N_("SharedBlock primary storage\n{ps}\non LUN {wwid}"),
    "nested_vm": N_("nested VM {vm}\n(root disk on SharedBlock)"),
    "ssh_edge": N_("ssh :{port}"),
    "lun_edge": N_("the LUN, logged in over iSCSI"),
    "disk_edge": N_("exports"),
    "unknown": "?",
    "not_yet": N_("not built yet"),
    "title": N_("Lab {lab} ({state}, profile {profile})"),
    "tree_flows": N_("Flows:"),
    "tree_flow": N_("  {label}: {source} → {target}:{port}"),
    "no_graphviz": N_("no picture: Graphviz is not available here ({reason}); the lab as text:"),
})

_FLOW_COLOURS = {"iscsi": "#1f6fb2", "ui": "#2e8b57", "api": "#d2691e"}


class PictureUnavailable(Exception):
    """Graphviz cannot draw here (not installed, or ``dot`` failed); the message says why."""


def _v(value: object | None) -> str:
    return TEXT["unknown"] if value is None else str(value)


# Latin text in DejaVu, Chinese in WenQuanYi Micro Hei (Debian fonts-wqy-microhei, installed by make): pango takes
# a family list, so a zh_CN picture shows glyphs, not boxes.
FONT = "DejaVu Sans,WenQuanYi Micro Hei"


def to_dot(picture: LabPicture) -> str:
    """The lab as Graphviz DOT source (pure: no Graphviz binary needed)."""
    import graphviz

    p = picture
    graph = graphviz.Digraph("lab", graph_attr={
        "label": TEXT["title"].format(lab=p.lab, state=state_word(p.state), profile=p.profile), "labelloc": "t",
        "fontname": FONT, "fontsize": "16", "rankdir": "TB", "compound": "true", "nodesep": "0.35",
        "ranksep": "0.7", "bgcolor": "white",
    }, node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "white", "fontname": FONT,
                  "fontsize": "11"}, edge_attr={"fontname": FONT, "fontsize": "10"})
    graph.node("computer", TEXT["computer"], shape="box3d", fillcolor="#f2f2f2")
    with graph.subgraph(name="cluster_platform") as platform:
        platform.attr(label=TEXT["platform"], style="rounded,dashed", color="#888888", fontname=FONT)
        with platform.subgraph(name="cluster_vm1") as vm1:
            vm1.attr(label=TEXT["vm1"].format(public=_v(p.vm1_public_ip), vpc=_v(p.vm1_vpc_ip)), style="rounded,filled",
                     fillcolor="#eaf2fb", color="#1f6fb2")
            vm1.node("access", TEXT["role_access"].format(port=p.ssh_port))
            vm1.node("jump", TEXT["role_jump"])
            vm1.node("target", TEXT["role_iscsi"].format(
                backend=p.iscsi_backend, iqn=_v(p.iscsi_iqn), lun=_v(p.iscsi_lun), wwid=_v(p.iscsi_wwid),
                portal=_v(p.portal)))
            vm1.node("disk", TEXT["disk"].format(gb=p.disk_gb), shape="cylinder", fillcolor="#fff7e0")
        with platform.subgraph(name="cluster_vm2") as vm2:
            vm2.attr(label=TEXT["vm2"].format(vpc=_v(p.vm2_ip)), style="rounded,filled", fillcolor="#eef7ee",
                     color="#2e8b57")
            vm2.node("mn", TEXT["mn"].format(ui=p.ui_port, api=p.api_port))
            vm2.node("initiator", _("iSCSI initiator"))
            nested = [
                ("zone", TEXT["zone"].format(zone=p.zone) if p.zone else None),
                ("cluster", TEXT["cluster"].format(cluster=p.cluster) if p.cluster else None),
                ("host", TEXT["host"].format(host=p.host) if p.host else None),
                ("ps", TEXT["ps"].format(ps=p.primary_storage, wwid=_v(p.iscsi_wwid)) if p.primary_storage else None),
                ("nested_vm", TEXT["nested_vm"].format(vm=p.nested_vm) if p.nested_vm else None),
            ]
            for key, label in nested:
                if label is None:
                    vm2.node(key, f"{key.replace('_', ' ')}\n({TEXT['not_yet']})", style="rounded,dashed")
                else:
                    vm2.node(key, label, fillcolor="#ffffff")
    graph.edge("computer", "access", label=TEXT["ssh_edge"].format(port=p.ssh_port))
    graph.edge("access", "jump", style="invis")
    graph.edge("target", "disk", label=TEXT["disk_edge"], dir="back", style="dashed")
    graph.edge("mn", "zone")
    graph.edge("zone", "cluster")
    graph.edge("cluster", "host")
    graph.edge("initiator", "ps", label=TEXT["lun_edge"], style="dashed")
    graph.edge("ps", "nested_vm", style="dashed")
    graph.edge("host", "nested_vm")
    for flow in p.flows:
        _flow_edge(graph, flow)
    return graph.source


def _flow_edge(graph: object, flow: Flow) -> None:
    colour = _FLOW_COLOURS.get(flow.key, "black")
    # The node each flow leaves from and arrives at, as the course draws them.
    ends = {"iscsi": ("initiator", "target"), "ui": ("jump", "mn"), "api": ("jump", "mn")}[flow.key]
    graph.edge(*ends, label=f"{flow.label}\n:{flow.port}", color=colour, fontcolor=colour,  # type: ignore[attr-defined]
               penwidth="2")


def render_png(picture: LabPicture) -> bytes:
    """The picture as PNG bytes; ``PictureUnavailable`` when Graphviz cannot draw here (blocking: run in a thread)."""
    try:
        import graphviz
    except ImportError as err:
        raise PictureUnavailable(_("the graphviz Python package is missing: {err}").format(err=err)) from None
    try:
        return graphviz.pipe("dot", "png", to_dot(picture).encode(), quiet=True)
    except graphviz.ExecutableNotFound:
        raise PictureUnavailable(_("the `dot` program (Debian package graphviz) is not installed")) from None
    except (graphviz.CalledProcessError, OSError) as err:
        log.warning("Graphviz could not draw lab %s: %s", picture.lab, err)
        raise PictureUnavailable(_("dot failed: {value}").format(value=str(err)[:200])) from None


def _known(text: str | None, missing: str) -> str:
    """A fact of the tree on one line, or ``<what> (not built yet)`` when the lab has not made it."""
    if text is None:
        return _("{what} ({not_yet})").format(what=missing, not_yet=TEXT["not_yet"])
    return text.replace("\n", " ")


def text_tree(picture: LabPicture) -> list[str]:
    """The same lab as indented lines (the console's picture, and the fallback everywhere)."""
    p = picture
    lines = [
        TEXT["title"].format(lab=p.lab, state=state_word(p.state), profile=p.profile),
        TEXT["computer"].replace("\n", " "),
        "└─ " + TEXT["platform"],
        "   ├─ " + TEXT["vm1"].format(public=_v(p.vm1_public_ip), vpc=_v(p.vm1_vpc_ip)).replace("\n", ": "),
        "   │  ├─ " + TEXT["role_access"].format(port=p.ssh_port).replace("\n", " "),
        "   │  ├─ "
        + TEXT["role_iscsi"]
        .format(
            backend=p.iscsi_backend,
            iqn=_v(p.iscsi_iqn),
            lun=_v(p.iscsi_lun),
            wwid=_v(p.iscsi_wwid),
            portal=_v(p.portal),
        )
        .replace("\n", ", "),
        "   │  │  └─ " + TEXT["disk"].format(gb=p.disk_gb).replace("\n", " "),
        "   │  └─ " + TEXT["role_jump"].replace("\n", " "),
        "   └─ " + TEXT["vm2"].format(vpc=_v(p.vm2_ip)).replace("\n", ": "),
        "      └─ " + TEXT["mn"].format(ui=p.ui_port, api=p.api_port).replace("\n", ": "),
        "         └─ " + _known(TEXT["zone"].format(zone=p.zone) if p.zone else None, _("zone")),
        "            └─ " + _known(TEXT["cluster"].format(cluster=p.cluster) if p.cluster else None, _("cluster")),
        "               ├─ " + _known(TEXT["host"].format(host=p.host) if p.host else None, _("host")),
        "               └─ " + _known(TEXT["ps"].format(ps=p.primary_storage, wwid=_v(p.iscsi_wwid))
                                     if p.primary_storage else None, _("primary storage")),
        "                  └─ " + _known(TEXT["nested_vm"].format(vm=p.nested_vm) if p.nested_vm else None,
                                        _("nested VM")),
        TEXT["tree_flows"],
    ]
    names = {"vm1": _("VM1 {v}").format(v=_v(p.vm1_vpc_ip)), "vm2": _("VM2 {v}").format(v=_v(p.vm2_ip))}
    for flow in p.flows:
        lines.append(
            TEXT["tree_flow"].format(
                label=flow.label, source=names[flow.source], target=names[flow.target], port=flow.port
            )
        )
    return lines
