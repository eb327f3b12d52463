"""Label and field selectors as the API server evaluates them."""

from __future__ import annotations

import pytest

from podnet.api.selectors import matcher, parse_labels, selectable
from podnet.api.status import ApiError

POD = {"kind": "Pod", "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web", "tier": "fe"}},
       "spec": {"nodeName": "node1"}, "status": {"phase": "Running"}}


@pytest.mark.parametrize("sel,ok", [
    ("app=web", True), ("app==web", True), ("app!=web", False), ("app in (db,web)", True),
    ("app notin (web)", False), ("tier", True), ("!tier", False), ("!missing", True), ("missing!=x", True),
    ("app=web,tier in (fe, be)", True), ("app=web,tier=be", False), ("", True),
])
def test_label_selectors(sel, ok):
    assert matcher("Pod", sel, None)(selectable(POD)) is ok


@pytest.mark.parametrize("sel,ok", [
    ("metadata.name=p", True), ("spec.nodeName=node1,status.phase!=Succeeded,status.phase!=Failed", True),
    ("metadata.namespace!=default", False), ("status.phase=Pending", False),
])
def test_field_selectors(sel, ok):
    assert matcher("Pod", None, sel)(selectable(POD)) is ok


def test_bad_selectors_are_400():
    with pytest.raises(ApiError) as e:
        parse_labels("app in web")
    assert e.value.code == 400
    with pytest.raises(ApiError) as e:
        matcher("Service", None, "spec.nodeName=x")
    assert e.value.code == 400 and "not a known field selector" in e.value.message
