"""The real kubectl (and the official Python client) against a lab's API server: every kubectl command of the
two articles, apply/diff/delete reaching the dataplane, watches, logs, exec, and the API server's errors.

One seed lab for the whole module; kubectl gets a fresh HOME (its discovery cache) and the lab's kubeconfig.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from podnet.api import process
from tests.lab.conftest import run, running_lab, sh

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kubectl")
    with running_lab(tmp, "seed-vxlan.yaml") as lab:
        lab.tmp = tmp
        lab.home = tmp / "home"
        lab.home.mkdir()
        lab.kubeconfig = f"/run/podnet/{lab.name}/kubeconfig"
        lab.state = json.loads(Path(f"/run/podnet/{lab.name}/api/server.json").read_text())
        yield lab
    assert not process.server_pids(lab.name), "down left the API server running"


def kubectl(lab, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 30) \
        -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(lab.home), "KUBECONFIG": lab.kubeconfig}
    p = subprocess.run([KUBECTL, *args], capture_output=True, text=True, env=env, input=stdin, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def api(lab, method: str, path: str, body: bytes | None = None, ctype: str = "application/json"):
    """A raw request with the kubeconfig's CA and token: (status, parsed JSON body)."""
    cfg = yaml.safe_load(Path(lab.kubeconfig).read_text())
    ctx = ssl.create_default_context(cafile=f"/run/podnet/{lab.name}/api/ca.crt")
    req = urllib.request.Request(cfg["clusters"][0]["cluster"]["server"] + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {cfg['users'][0]['user']['token']}",
                                          "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()[1:]]


# ------------------------------------------------------------------------------------------------ setup
def test_api_listens_on_loopback_only_with_tls_and_a_token(lab):
    port = lab.state["port"]
    listening = [line.split() for line in sh("ss", "-Hltn").stdout.splitlines()]
    ours = [f[3] for f in listening if f[3].rsplit(":", 1)[-1] == str(port)]
    assert ours == [f"127.0.0.1:{port}"]
    assert lab.state["scheme"] == "https"
    cfg = yaml.safe_load(Path(lab.kubeconfig).read_text())
    assert cfg["current-context"] == lab.name and cfg["contexts"][0]["name"] == lab.name
    assert oct(os.stat(lab.kubeconfig).st_mode & 0o777) == "0o600"
    assert "certificate-authority-data" in cfg["clusters"][0]["cluster"]
    assert run("kubeconfig", "--lab", lab.name, "--path").stdout.strip() == lab.kubeconfig
    assert yaml.safe_load(run("kubeconfig", "--lab", lab.name).stdout) == cfg
    ctx = ssl.create_default_context(cafile=f"/run/podnet/{lab.name}/api/ca.crt")
    with pytest.raises(urllib.error.HTTPError) as e:   # no token: 401 Status
        urllib.request.urlopen(f"https://127.0.0.1:{port}/api/v1/pods", context=ctx, timeout=5)
    assert e.value.code == 401 and json.loads(e.value.read())["reason"] == "Unauthorized"


# ----------------------------------------------------------------------------------- the articles' commands
def test_get_pods_wide_shows_ips_and_nodes(lab):
    out = kubectl(lab, "get", "pods", "-A", "-o", "wide").stdout
    assert out.splitlines()[0].split()[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    got = {r[1]: r for r in rows(out)}
    assert got["pod-a"][:4] == ["default", "pod-a", "1/1", "Running"] and got["pod-a"][6:8] == ["10.244.1.5", "node1"]
    assert got["pod-b"][6:8] == ["10.244.2.8", "node2"] and got["pod-c"][6:8] == ["10.244.2.9", "node2"]


def test_get_kube_system_pods_and_components(lab):
    names = [r[0] for r in rows(kubectl(lab, "get", "pods", "-n", "kube-system").stdout)]
    assert {"kube-proxy-node1", "kube-proxy-node2", "kube-flannel-node1", "kube-flannel-node2"} <= set(names)
    assert any(n.startswith("coredns-") for n in names)
    proxies = rows(kubectl(lab, "get", "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy").stdout)
    assert [(r[0], r[1], r[2]) for r in proxies] == [("kube-proxy-node1", "1/1", "Running"),
                                                      ("kube-proxy-node2", "1/1", "Running")]


def test_get_endpoints_my_service(lab):
    out = kubectl(lab, "get", "endpoints", "my-service").stdout
    assert rows(out)[0][:2] == ["my-service", "10.244.2.8:8080,10.244.2.9:8080"]
    out = kubectl(lab, "get", "svc,ep", "my-service").stdout
    assert "service/my-service   ClusterIP   10.96.45.67" in out


def test_get_networkpolicy_all_namespaces_and_other_kinds(lab):
    p = kubectl(lab, "get", "networkpolicy", "-A")
    assert p.stdout == "" and "No resources found" in p.stderr
    nodes = rows(kubectl(lab, "get", "nodes", "-o", "wide").stdout)
    assert [(r[0], r[1], r[5]) for r in nodes] == [("node1", "Ready", "192.168.1.10"),
                                                   ("node2", "Ready", "192.168.1.11")]
    assert rows(kubectl(lab, "get", "endpointslices").stdout)[0][1:4] == ["IPv4", "8080", "10.244.2.8,10.244.2.9"]
    assert {r[0] for r in rows(kubectl(lab, "get", "ns").stdout)} >= {"default", "kube-system"}
    assert "Endpoints:                10.244.2.8:8080,10.244.2.9:8080" in kubectl(lab, "describe", "svc",
                                                                                  "my-service").stdout
    assert "Server Version: v1.32.0+podnet" in kubectl(lab, "version").stdout
    assert "networkpolicies" in kubectl(lab, "api-resources").stdout


def test_logs_of_kube_proxy_name_the_proxier(lab):
    out = kubectl(lab, "logs", "-n", "kube-system", "-l", "k8s-app=kube-proxy").stdout
    using = [line for line in out.splitlines() if "Using" in line]
    assert any('"Using iptables Proxier"' in line for line in using)
    out = kubectl(lab, "logs", "-n", "kube-system", "-l", "k8s-app=kube-proxy", "--prefix").stdout
    assert any(line.startswith("[pod/kube-proxy-node2/kube-proxy] ") for line in out.splitlines())
    out = kubectl(lab, "logs", "-n", "kube-system", "kube-proxy-node1", "--tail=1", "--timestamps").stdout
    assert len(out.splitlines()) == 1 and out[:4].isdigit() and out[10] == "T"
    stamp, line = out.split(" ", 1)
    assert line.startswith("I") and stamp[11:19] == line[6:14]   # the line's own klog time
    assert kubectl(lab, "logs", "-n", "kube-system", "kube-proxy-node1", "--since=1h").stdout.count("Using") >= 1
    assert kubectl(lab, "logs", "-n", "kube-system", "kube-proxy-node1", "--since-time=2999-01-01T00:00:00Z"
                   ).stdout == ""


def test_logs_follow(lab):
    env = {**os.environ, "HOME": str(lab.home), "KUBECONFIG": lab.kubeconfig}
    f = subprocess.Popen([KUBECTL, "logs", "-f", "pod-b", "--tail=0"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(0.5)
        lab.exec("pod-a", "curl", "-s", "--max-time", "3", "10.244.2.8:8080/followed")
        deadline = time.monotonic() + 5
        line = ""
        while time.monotonic() < deadline and "/followed" not in line:
            line = f.stdout.readline()
        assert "/followed" in line and "10.244.1.5" in line
    finally:
        f.kill()
        f.wait()


def test_exec_curl_my_service_is_answered(lab):
    out = kubectl(lab, "exec", "pod-a", "--", "curl", "-s", "--max-time", "5", "my-service:8080").stdout.split()
    assert out[0] in ("pod-b", "pod-c") and out[2] == "10.244.1.5"
    out = kubectl(lab, "exec", "pod-a", "--", "curl", "-sv", "--max-time", "5", "10.96.45.67:8080")
    assert "< HTTP/1.1 200" in out.stderr
    assert "nameserver 10.96.0.10" in kubectl(lab, "exec", "pod-a", "--", "cat", "/etc/resolv.conf").stdout
    assert "10.96.45.67" in kubectl(lab, "exec", "pod-a", "--", "nslookup", "my-service").stdout
    for ip in ("10.244.1.1", "10.244.2.8"):   # the node's bridge, a pod on the other node
        assert kubectl(lab, "exec", "pod-a", "--", "ping", "-c1", "-W2", ip).returncode == 0


def test_exec_exit_code_stdin_stderr(lab):
    p = kubectl(lab, "exec", "pod-a", "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\ncommand terminated with exit code 3\n")
    data = "x" * 200_000 + "\n"
    assert kubectl(lab, "exec", "-i", "pod-a", "--", "wc", "-c", stdin=data).stdout.strip() == str(len(data))
    p = kubectl(lab, "exec", "pod-a", "-c", "nope", "--", "true", check=False)
    assert p.returncode == 1 and "container nope is not valid for pod pod-a" in p.stderr


def test_exec_tty_with_resize(lab):
    env = {**os.environ, "HOME": str(lab.home), "KUBECONFIG": lab.kubeconfig}
    cmd = f"stty cols 100 rows 25; {KUBECTL} exec -it pod-a -- sh -c 'stty size; tty; exit 4'"
    p = subprocess.run(f"sleep 3 | script -qec \"{cmd}\" /dev/null", shell=True, capture_output=True, text=True,
                       env=env, timeout=30)
    lines = p.stdout.replace("\r", "").splitlines()
    assert "25 100" in lines and any(line.startswith("/dev/pts/") for line in lines), p.stdout
    assert "command terminated with exit code 4" in p.stdout


# ----------------------------------------------------------------------------------- apply, diff, delete, watch
SVC = """apiVersion: v1
kind: Service
metadata:
  name: web2
  namespace: default
spec:
  selector: {app: my-app}
  ports:
  - name: http
    port: PORT
    targetPort: 8080
"""


def test_apply_reaches_the_dataplane_within_a_second_and_delete_removes_it(lab):
    env = {**os.environ, "HOME": str(lab.home), "KUBECONFIG": lab.kubeconfig}
    f = lab.tmp / "web2.yaml"
    f.write_text(SVC.replace("PORT", "80"))
    watch = subprocess.Popen([KUBECTL, "get", "svc", "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    try:
        time.sleep(0.5)
        assert kubectl(lab, "apply", "-f", str(f)).stdout == "service/web2 created\n"
        t0 = time.monotonic()
        ip = kubectl(lab, "get", "svc", "web2", "-o", "jsonpath={.spec.clusterIP}").stdout
        answered = False
        while not answered and time.monotonic() - t0 < 1.0:
            answered = lab.exec("pod-a", "curl", "-s", "--max-time", "0.3", f"{ip}:80", check=False).returncode == 0
        assert answered, "the new Service did not answer within a second of kubectl apply"
        assert kubectl(lab, "apply", "-f", str(f)).stdout == "service/web2 unchanged\n"
        assert kubectl(lab, "diff", "-f", str(f)).returncode == 0
        f.write_text(SVC.replace("PORT", "81"))
        d = kubectl(lab, "diff", "-f", str(f), check=False)
        assert d.returncode == 1 and "-    port: 80" in d.stdout and "+    port: 81" in d.stdout
        assert kubectl(lab, "apply", "-f", str(f)).stdout == "service/web2 configured\n"
        assert rows(kubectl(lab, "get", "svc", "web2").stdout)[0][4] == "81/TCP"
        assert lab.exec("pod-a", "curl", "-s", "--max-time", "2", f"{ip}:81").returncode == 0
        assert kubectl(lab, "delete", "-f", str(f)).stdout == 'service "web2" deleted\n'
        p = kubectl(lab, "get", "svc", "web2", check=False)
        assert 'Error from server (NotFound): services "web2" not found' in p.stderr
        assert lab.exec("pod-a", "curl", "-s", "--max-time", "0.5", f"{ip}:81", check=False).returncode != 0
        time.sleep(0.5)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=5)
    seen = [r[:5] for r in rows(out) if r[0] == "web2"]
    assert seen[0][4] == "80/TCP" and seen[-1][4] == "81/TCP" and len(seen) >= 3   # added, modified, deleted


def test_pods_apply_delete_and_get_w(lab):
    env = {**os.environ, "HOME": str(lab.home), "KUBECONFIG": lab.kubeconfig}
    f = lab.tmp / "pod-d.yaml"
    f.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-d\n  labels: {app: d}\nspec:\n  containers:\n"
                 "  - name: app\n    image: busybox\n    command: [sleep, infinity]\n")
    watch = subprocess.Popen([KUBECTL, "get", "pods", "-w"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(0.5)
        kubectl(lab, "apply", "-f", str(f))
        kubectl(lab, "wait", "--for=condition=Ready", "pod/pod-d", "--timeout=10s")
        assert kubectl(lab, "label", "pod", "pod-d", "tier=x").stdout == "pod/pod-d labeled\n"
        assert "app=d,tier=x" in kubectl(lab, "get", "pod", "pod-d", "--show-labels").stdout
        f.write_text(f.read_text().replace("infinity", '"1000"'))
        p = kubectl(lab, "apply", "-f", str(f), check=False)
        assert p.returncode == 1
        assert p.stderr.startswith('The Pod "pod-d" is invalid: spec: Forbidden: pod updates may not change fields '
                                   "other than `spec.containers[*].image`")
        kubectl(lab, "delete", "pod", "pod-d")
        assert not any(n.endswith("default-pod-d") for n in lab.namespaces())
        time.sleep(0.5)
    finally:
        watch.terminate()
        out, _ = watch.communicate(timeout=5)
    statuses = [r[2] for r in rows(out) if r[0] == "pod-d"]
    assert "Running" in statuses and statuses[-1] == "Terminating"


# ----------------------------------------------------------------------------------------------------- errors
def test_bad_requests_get_the_api_servers_answers(lab):
    bad = lab.tmp / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: bad1\nspec:\n  foo: 1\n  ports: [{port: 80}]\n")
    p = kubectl(lab, "apply", "-f", str(bad), check=False)
    assert p.returncode == 1 and p.stderr.strip() == (
        f'Error from server (BadRequest): error when creating "{bad}": Service in version "v1" cannot be handled '
        'as a Service: strict decoding error: unknown field "spec.foo"')
    p = kubectl(lab, "get", "foos", check=False)
    assert p.returncode == 1 and 'the server doesn\'t have a resource type "foos"' in p.stderr
    p = kubectl(lab, "get", "pod", "nope", check=False)
    assert p.stderr.strip() == 'Error from server (NotFound): pods "nope" not found'
    p = kubectl(lab, "create", "-f", "-", stdin="apiVersion: v1\nkind: Service\nmetadata: {name: my-service}\n"
                "spec: {ports: [{port: 80}]}\n", check=False)
    assert 'Error from server (AlreadyExists): error when creating "STDIN": services "my-service" already exists' \
        in p.stderr
    p = kubectl(lab, "create", "-f", "-", stdin="apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: nosuchns}"
                "\nspec: {containers: [{name: c}]}\n", check=False)
    assert 'Error from server (NotFound): error when creating "STDIN": namespaces "nosuchns" not found' in p.stderr
    code, body = api(lab, "POST", "/api/v1/namespaces/default/services", b'{"apiVersion": "v1", "kind":')
    assert code == 400 and body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert body["message"].startswith("couldn't get version/kind; json parse error")
    code, body = api(lab, "POST", "/api/v1/namespaces/default/services?fieldValidation=Strict",
                     json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "Bad_Name"},
                                 "spec": {"ports": [{"port": 80}]}}).encode())
    assert code == 422 and body["reason"] == "Invalid" and body["details"]["causes"][0]["field"] == "metadata.name"
    code, body = api(lab, "GET", "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/nope")
    assert (code, body["message"]) == (404, 'networkpolicies.networking.k8s.io "nope" not found')
    code, body = api(lab, "PATCH", "/api/v1/namespaces/default/pods/pod-a", b"{}", "text/plain")
    assert code == 415
    code, body = api(lab, "DELETE", "/api/v1/namespaces/kube-system")
    assert code == 403 and body["message"] == 'namespaces "kube-system" is forbidden: this namespace may not be deleted'


# ------------------------------------------------------------------------------------- the official Python client
def test_python_client_lists_watches_creates_patches_deletes_and_execs(lab):
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes import client, config, watch
    from kubernetes.stream import stream

    api_client = config.new_client_from_config(lab.kubeconfig)
    v1 = client.CoreV1Api(api_client)
    assert client.VersionApi(api_client).get_code().minor == "32"
    pods = {p.metadata.name: p for p in v1.list_pod_for_all_namespaces().items}
    assert pods["pod-a"].status.pod_ip == "10.244.1.5" and pods["pod-a"].spec.node_name == "node1"
    assert [n.metadata.name for n in v1.list_node().items] == ["node1", "node2"]
    ep = v1.read_namespaced_endpoints("my-service", "default")
    assert [a.ip for a in ep.subsets[0].addresses] == ["10.244.2.8", "10.244.2.9"]
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice("default").items
    assert slices[0].metadata.labels["kubernetes.io/service-name"] == "my-service"
    assert client.NetworkingV1Api(api_client).list_network_policy_for_all_namespaces().items == []

    rv = v1.list_namespaced_service("default").metadata.resource_version
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="pysvc"),
                           spec=client.V1ServiceSpec(selector={"app": "my-app"},
                                                     ports=[client.V1ServicePort(port=90, target_port=8080)]))
    created = v1.create_namespaced_service("default", svc)
    assert created.spec.cluster_ip.startswith("10.") and created.metadata.uid
    patched = v1.patch_namespaced_service("pysvc", "default", {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"x": "y"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    v1.delete_namespaced_service("pysvc", "default")
    events = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_service, "default", resource_version=rv, timeout_seconds=5):
        events.append((ev["type"], ev["object"].metadata.name))
        if ev["type"] == "DELETED":
            w.stop()
    assert events == [("ADDED", "pysvc"), ("MODIFIED", "pysvc"), ("DELETED", "pysvc")]
    with pytest.raises(kubernetes.client.ApiException) as e:
        v1.read_namespaced_pod("nope", "default")
    assert e.value.status == 404 and json.loads(e.value.body)["reason"] == "NotFound"
    out = stream(v1.connect_get_namespaced_pod_exec, "pod-a", "default", command=["sh", "-c", "echo py-exec"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "py-exec\n"
    # a watch from before the store's compacted revision: 410 Gone, as etcd's compaction gives
    from podnet.dataplane import lab as labrt

    st = labrt.open_store(lab.name)
    try:
        st.compact(st.revision)
    finally:
        st.close()
    with pytest.raises(kubernetes.client.ApiException) as e:
        list(watch.Watch().stream(v1.list_namespaced_pod, "default", resource_version="1", timeout_seconds=2))
    assert e.value.status == 410


def test_networkpolicy_apply_is_unchanged_the_second_time(lab):
    f = lab.tmp / "np.yaml"
    f.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-in}\nspec:\n"
                 "  podSelector:\n    matchLabels: {app: web}\n    matchExpressions: [{key: tier, operator: In, "
                 "values: [fe, be]}]\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: client}}}]\n"
                 "    ports: [{port: 8080}]\n")
    assert kubectl(lab, "apply", "-f", str(f)).stdout == "networkpolicy.networking.k8s.io/web-in created\n"
    assert kubectl(lab, "apply", "-f", str(f)).stdout == "networkpolicy.networking.k8s.io/web-in unchanged\n"
    out = kubectl(lab, "get", "networkpolicy", "-A").stdout
    assert out.splitlines()[0].split() == ["NAMESPACE", "NAME", "POD-SELECTOR", "AGE"]
    assert out.splitlines()[1].startswith("default     web-in   app=web,tier in (be,fe)   ")
    kubectl(lab, "delete", "-f", str(f))


def test_plain_http_only_when_asked(lab):
    """The same server without TLS (what PODNET_API_HTTP=1 gives): discovery and reads over plain HTTP."""
    import threading

    from podnet.api import server

    srv = server.ApiServer(lab.name, f"/run/podnet/{lab.name}/store.db", 0, "t0ken", None)
    srv.start_background()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"

    def get(path: str, token: str = "t0ken") -> tuple[int, dict]:
        req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        assert get("/version/")[1]["minor"] == "32"   # the Python client's spelling, trailing slash
        assert get("/api/v1/namespaces/default/pods/pod-a")[1]["status"]["podIP"] == "10.244.1.5"
        assert get("/api/v1/pods", token="wrong")[0] == 401
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()


def test_create_namespace_run_a_pod_and_delete_the_namespace(lab):
    assert kubectl(lab, "create", "namespace", "team1").stdout == "namespace/team1 created\n"   # protobuf body
    assert "kubernetes.io/metadata.name=team1" in kubectl(lab, "get", "ns", "team1", "--show-labels").stdout
    kubectl(lab, "run", "web", "-n", "team1", "--image=nginx", "--port=80")
    ip = kubectl(lab, "get", "pod", "web", "-n", "team1", "-o", "jsonpath={.status.podIP}").stdout
    out = lab.exec("pod-a", "curl", "-s", "--max-time", "3", f"{ip}:80").stdout.split()
    assert out[:2] == ["web", ip]
    assert kubectl(lab, "delete", "namespace", "team1").stdout == 'namespace "team1" deleted\n'
    assert not any("team1" in n for n in lab.namespaces())
    p = kubectl(lab, "create", "deployment", "x", "--image=nginx", check=False)
    assert p.returncode == 1 and "use `kubectl apply -f`" in p.stderr


def test_kube_system_workloads(lab):
    ds = {r[0]: r for r in rows(kubectl(lab, "get", "ds", "-n", "kube-system").stdout)}
    assert ds["kube-proxy"][1:4] == ["2", "2", "2"] and "kube-flannel-ds" in ds
    assert rows(kubectl(lab, "get", "deploy", "-n", "kube-system").stdout)[0][:2] == ["coredns", "2/2"]
    assert "CoreDNS" in kubectl(lab, "logs", "-n", "kube-system", "deploy/coredns").stdout
    p = kubectl(lab, "delete", "pod", "-n", "kube-system", "kube-proxy-node1", check=False)
    assert p.returncode == 1 and "belongs to DaemonSet/kube-proxy" in p.stderr
