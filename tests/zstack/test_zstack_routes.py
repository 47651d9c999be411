"""The route table against ZStack 5.2.1's SDK routes (zstack-sdk-routes.tsv), and the simulator's coverage."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.zstack_sim.app import create_app
from sandbox.zstack_sim.context import HANDLERS
from services.zstack.routes import ROUTES, render_tsv, route

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = PROJECT_ROOT.parent / "shared" / "reference" / "zstack-sdk-routes.tsv"


def _reference() -> dict[str, list[str]]:
    if not REFERENCE.exists():
        pytest.skip(f"reference file {REFERENCE} is absent (shared/ is expected beside the project)")
    with REFERENCE.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0][:6] == ["action", "method", "path", "needSession", "needPoll", "parameterName"]
    return {row[0]: row[:6] for row in rows[1:]}


def test_every_declared_route_matches_the_sdk() -> None:
    reference = _reference()
    for line in render_tsv().splitlines()[1:]:
        ours = line.split("\t")
        assert ours[0] in reference, f"{ours[0]} is not a ZStack 5.2.1 API"
        assert ours == reference[ours[0]], f"{ours[0]}: ours {ours} != SDK {reference[ours[0]]}"


def test_the_module_prints_the_table_as_tsv() -> None:
    printed = subprocess.run([sys.executable, "-m", "services.zstack.routes"], cwd=PROJECT_ROOT, check=True,
                             capture_output=True, text=True)
    assert printed.stderr == ""
    lines = printed.stdout.splitlines()
    assert lines[0] == "action\tmethod\tpath\tneedSession\tneedPoll\tparameterName"
    assert len(lines) == len(ROUTES) + 1
    attach_l2 = "AttachL2NetworkToCluster\tPOST\t/l2-networks/{l2NetworkUuid}/clusters/{clusterUuid}\tTrue\tTrue\tnull"
    assert attach_l2 in lines
    assert "QueryVmInstance\tGET\t/vm-instances\tTrue\tFalse\t" in lines


def test_the_simulator_serves_every_declared_route() -> None:
    create_app("nested")  # refuses to build when a route lacks a handler
    assert set(ROUTES) <= set(HANDLERS)


def test_render_path_quotes_values_and_refuses_unsafe_ones() -> None:
    api = route("AttachPrimaryStorageToCluster")
    assert api.path_vars == ("clusterUuid", "primaryStorageUuid")
    assert api.render_path({"clusterUuid": "c1", "primaryStorageUuid": "p 1"}) == "/clusters/c1/primary-storage/p%201"
    for bad in ("", "../x", "a/b", ".."):
        with pytest.raises(ValueError, match="path variable"):
            api.render_path({"clusterUuid": bad, "primaryStorageUuid": "p"})
    with pytest.raises(KeyError, match=r"not in services\.zstack\.routes\.ROUTES"):
        route("NoSuchAction")
