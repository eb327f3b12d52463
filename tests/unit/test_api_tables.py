"""Server-side Tables: the cells kube-apiserver's printers make (kubectl prints them as they come)."""

from __future__ import annotations

import pytest

from podnet.api import tables

NOW = 1_800_000_000.0


@pytest.mark.parametrize("seconds,text", [
    (-5, "<invalid>"), (-0.5, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (150, "2m30s"), (599, "9m59s"),
    (600, "10m"), (179 * 60, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (8 * 3600 + 120, "8h"),
    (47 * 3600, "47h"), (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"), (400 * 86400, "400d"),
    (3 * 365 * 86400 + 5 * 86400, "3y5d"), (9 * 365 * 86400, "9y"),
])
def test_human_duration_matches_apimachinery(seconds, text):
    assert tables.human_duration(seconds) == text


def _ts(ago: float) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - ago))


def test_pod_row_has_every_cell_including_wide_ones():
    pod = {"metadata": {"name": "pod-a", "creationTimestamp": _ts(65)},
           "spec": {"nodeName": "node1", "containers": [{"name": "c"}, {"name": "d"}]},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.244.1.5"}],
                      "containerStatuses": [{"name": "c", "ready": True, "restartCount": 1, "state": {"running": {}}},
                                            {"name": "d", "ready": False, "restartCount": 0,
                                             "state": {"terminated": {"exitCode": 2}}}]}}
    t = tables.table("pods", [pod], "42", now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]][:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert [c["priority"] for c in t["columnDefinitions"]] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert t["rows"][0]["cells"] == ["pod-a", "1/2", "ExitCode:2", "1", "65s", "10.244.1.5", "node1", "<none>",
                                     "<none>"]
    assert t["metadata"]["resourceVersion"] == "42"
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_terminating_pod_and_include_object():
    pod = {"metadata": {"name": "p", "deletionTimestamp": _ts(1)}, "spec": {"containers": [{"name": "c"}]},
           "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": True,
                                                                 "state": {"running": {}}}]}}
    t = tables.table("pods", [pod], "1", include="Object", now=NOW)
    assert t["rows"][0]["cells"][2] == "Terminating"
    assert t["rows"][0]["object"] is pod
    assert "object" not in tables.table("pods", [pod], "1", include="None", now=NOW)["rows"][0]


def test_service_cells():
    svc = {"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.20"],
                                                  "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"},
                                                            {"port": 53, "protocol": "UDP"}],
                                                  "selector": {"b": "2", "a": "1"}}}
    assert tables.service_row(svc, NOW) == ["web", "NodePort", "10.96.0.20", "<none>", "80:30080/TCP,53/UDP",
                                            "<unknown>", "a=1,b=2"]
    lb = {"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.21", "ports": []}}
    assert tables.service_row(lb, NOW)[3:5] == ["<pending>", "<none>"]


def test_endpoints_show_three_then_more():
    ep = {"metadata": {"name": "s"}, "subsets": [{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(5)],
                                                  "ports": [{"port": 80}]}]}
    assert tables.endpoints_row(ep, NOW)[1] == "10.0.0.0:80,10.0.0.1:80,10.0.0.2:80 + 2 more..."
    assert tables.endpoints_row({"metadata": {"name": "s"}}, NOW)[1] == "<none>"


def test_networkpolicy_selector_format():
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In",
                                                               "values": ["fe", "be"]}]}
    assert tables.fmt_selector(sel) == "app=web,tier in (be,fe)"
    assert tables.fmt_selector({}) == "<none>"
    assert tables.fmt_selector({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}) == "!x"


def test_node_cells():
    node = {"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.168.1.10"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "", "kernelVersion": "6.1"}}}
    assert tables.node_row(node, NOW) == ["n1", "Ready,SchedulingDisabled", "control-plane", "<unknown>", "v1.32.0",
                                          "192.168.1.10", "<none>", "<unknown>", "6.1", "<unknown>"]
