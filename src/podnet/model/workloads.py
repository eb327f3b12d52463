"""Namespace, Pod and Deployment: what podnet runs. Containers are processes, not images."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from podnet.model.fields import Context, Fields, check_name
from podnet.model.meta import ObjectMeta, parse_meta
from podnet.model.source import Doc

POD_IP_ANNOTATION = "podnet.dev/ip"
PROTOCOLS = ("TCP", "UDP", "SCTP")

# Container fields that matter for a process, and Kubernetes fields podnet accepts without effect.
CONTAINER_KNOWN = {"name", "command", "args", "ports", "env", "workingDir"}
CONTAINER_NOOP = {"image", "imagePullPolicy", "resources", "livenessProbe", "readinessProbe",
                  "startupProbe", "securityContext", "volumeMounts", "terminationMessagePath",
                  "terminationMessagePolicy", "lifecycle", "stdin", "tty", "envFrom", "volumeDevices",
                  "resizePolicy", "restartPolicy"}
# "image" is the norm in every real manifest: accepted silently (documented: there is no image runtime).
CONTAINER_SILENT = {"image", "imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy",
                    "resources"}
POD_SPEC_KNOWN = {"containers", "nodeName", "hostNetwork", "restartPolicy"}
POD_SPEC_NOOP = {"initContainers", "volumes", "serviceAccountName", "serviceAccount", "nodeSelector",
                 "affinity", "tolerations", "securityContext", "dnsPolicy", "dnsConfig", "hostname",
                 "subdomain", "priorityClassName", "terminationGracePeriodSeconds", "schedulerName",
                 "imagePullSecrets", "automountServiceAccountToken", "enableServiceLinks",
                 "topologySpreadConstraints", "hostAliases", "readinessGates", "shareProcessNamespace",
                 "hostPID", "hostIPC", "runtimeClassName", "priority", "preemptionPolicy", "overhead",
                 "activeDeadlineSeconds", "setHostnameAsFQDN", "os", "schedulingGates"}
POD_SPEC_SILENT = {"restartPolicy", "terminationGracePeriodSeconds", "dnsPolicy", "schedulerName",
                   "securityContext", "serviceAccountName", "serviceAccount", "enableServiceLinks",
                   "automountServiceAccountToken"}


@dataclass
class ContainerPort:
    container_port: int
    protocol: str = "TCP"
    name: str = ""


@dataclass
class Container:
    name: str
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    ports: list[ContainerPort] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""

    @property
    def argv(self) -> list[str]:
        return [*self.command, *self.args]


@dataclass
class PodSpec:
    containers: list[Container]
    node_name: str = ""
    host_network: bool = False


@dataclass
class Pod:
    meta: ObjectMeta
    spec: PodSpec
    owner: str = ""          # "Deployment/<name>" for generated pods
    source: str = ""         # file:line
    doc: Doc | None = field(default=None, repr=False, compare=False)   # for field line numbers

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"

    @property
    def requested_ip(self) -> str | None:
        return self.meta.annotations.get(POD_IP_ANNOTATION)


@dataclass
class Deployment:
    meta: ObjectMeta
    replicas: int
    selector: dict[str, str]
    template_meta: ObjectMeta
    template: PodSpec
    source: str = ""

    @property
    def key(self) -> str:
        return f"{self.meta.namespace}/{self.meta.name}"


@dataclass
class Namespace:
    meta: ObjectMeta
    source: str = ""

    @property
    def labels(self) -> dict[str, str]:
        return {**self.meta.labels, "kubernetes.io/metadata.name": self.meta.name}


def _noop_fields(f: Fields, known: set[str], noop: set[str], silent: set[str]) -> None:
    for key in list(f.data):
        if key in noop and key not in silent:
            f.ctx.warn(f.sub(key), "not honoured by podnet (ignored)")
    f.check(known | noop)


def parse_pod_spec(ctx: Context, spec: Fields) -> PodSpec:
    _noop_fields(spec, POD_SPEC_KNOWN, POD_SPEC_NOOP, POD_SPEC_SILENT)
    containers: list[Container] = []
    names: set[str] = set()
    port_names: set[str] = set()
    for cf in spec.maps("containers"):
        _noop_fields(cf, CONTAINER_KNOWN, CONTAINER_NOOP, CONTAINER_SILENT)
        name = cf.str("name", required=True)
        assert name is not None
        check_name(ctx, cf.sub("name"), name, "label")
        if name in names:
            raise ctx.error(cf.sub("name"), f"duplicate container name {name!r}")
        names.add(name)
        ports = []
        seen: set[tuple[int, str]] = set()
        for pf in cf.maps("ports"):
            pf.check({"containerPort", "protocol", "name"}, {"hostPort", "hostIP"})
            port = pf.int("containerPort", required=True, lo=1, hi=65535)
            proto = pf.str("protocol", "TCP")
            if proto not in PROTOCOLS:
                raise ctx.error(pf.sub("protocol"), f"unknown protocol {proto!r} (TCP, UDP or SCTP)")
            pname = pf.str("name", "") or ""
            if pname:
                check_name(ctx, pf.sub("name"), pname, "1035")
                if len(pname) > 15:
                    raise ctx.error(pf.sub("name"), f"port name {pname!r} is longer than 15 characters")
                if pname in port_names:
                    raise ctx.error(pf.sub("name"), f"duplicate port name {pname!r}")
                port_names.add(pname)
            assert port is not None and proto is not None
            if (port, proto) in seen:
                raise ctx.error(pf.sub("containerPort"), f"duplicate port {port}/{proto}")
            seen.add((port, proto))
            ports.append(ContainerPort(container_port=port, protocol=proto, name=pname))
        env = {}
        for ef in cf.maps("env"):
            ef.check({"name", "value"}, {"valueFrom"})
            en = ef.str("name", required=True)
            assert en is not None
            env[en] = ef.str("value", "") or ""
        argv_cmd = cf.strs("command")
        argv_args = cf.strs("args")
        containers.append(Container(name=name, command=argv_cmd, args=argv_args, ports=ports, env=env,
                                    working_dir=cf.str("workingDir", "") or ""))
    if not containers:
        raise ctx.error(spec.sub("containers"), "a pod needs at least one container")
    return PodSpec(containers=containers, node_name=spec.str("nodeName", "") or "",
                   host_network=bool(spec.bool("hostNetwork", False)))


def parse_pod(ctx: Context, body: Fields) -> Pod:
    body.check({"apiVersion", "kind", "metadata", "spec"}, {"status"})
    meta = parse_meta(ctx, body, namespaced=True)
    spec = parse_pod_spec(ctx, body.map("spec"))
    ip = meta.annotations.get(POD_IP_ANNOTATION)
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise ctx.error(f"metadata.annotations.{POD_IP_ANNOTATION}", f"invalid IP address {ip!r}") from None
    return Pod(meta=meta, spec=spec, source=ctx.where() or "", doc=ctx.doc)


def parse_deployment(ctx: Context, body: Fields) -> Deployment:
    body.check({"apiVersion", "kind", "metadata", "spec"}, {"status"})
    meta = parse_meta(ctx, body, namespaced=True)
    spec = body.map("spec")
    spec.check({"replicas", "selector", "template"},
               {"strategy", "minReadySeconds", "revisionHistoryLimit", "progressDeadlineSeconds", "paused"})
    replicas = spec.int("replicas", 1, lo=0, hi=10000)
    sel = spec.map("selector")
    sel.check({"matchLabels"}, {"matchExpressions"})
    selector = sel.labels("matchLabels")
    tmpl = spec.map("template")
    tmpl.check({"metadata", "spec"})
    tmeta = tmpl.map("metadata")
    tmeta.check({"labels", "annotations", "name", "namespace"}, {"creationTimestamp"})
    tlabels = tmeta.labels("labels")
    tann = {k: str(v) for k, v in tmeta.map("annotations").data.items()}
    if not selector:
        raise ctx.error("spec.selector.matchLabels", "required: a Deployment selects its pods by labels")
    for k, v in selector.items():
        if tlabels.get(k) != v:
            raise ctx.error("spec.template.metadata.labels",
                            f"selector does not match template labels (missing {k}={v})")
    if POD_IP_ANNOTATION in tann:
        raise ctx.error(f"spec.template.metadata.annotations.{POD_IP_ANNOTATION}",
                        "a pod template cannot pin one IP for every replica")
    template = parse_pod_spec(ctx, tmpl.map("spec"))
    assert replicas is not None
    return Deployment(meta=meta, replicas=replicas, selector=selector,
                      template_meta=ObjectMeta(name="", namespace=meta.namespace, labels=tlabels,
                                               annotations=tann),
                      template=template, source=ctx.where() or "")


def parse_namespace(ctx: Context, body: Fields) -> Namespace:
    body.check({"apiVersion", "kind", "metadata"}, {"spec", "status"})
    meta = parse_meta(ctx, body, namespaced=False, name_rule="label")
    return Namespace(meta=meta, source=ctx.where() or "")
