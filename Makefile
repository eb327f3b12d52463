# podnet — two commands on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PODNET := $(VENV)/bin/podnet
# Debian packages podnet drives (command -> package).
SYSTEM_CMDS := ip:iproute2 iptables:iptables nft:nftables conntrack:conntrack tcpdump:tcpdump \
  brctl:bridge-utils ping:iputils-ping dig:dnsutils socat:socat nc:netcat-openbsd \
  bird:bird2 birdc:bird2 curl:curl ethtool:ethtool iperf3:iperf3 pgrep:procps
DEMO_LAB ?= examples/seed-vxlan.yaml
DEMO_NAME ?= seed

.PHONY: all deps system-deps venv demo demo-down test test-unit test-lab lint bench clean

all: deps

deps: system-deps venv

# Installs only what is missing; needs root (podnet itself needs root for namespaces anyway).
system-deps:
	@missing=""; for pair in $(SYSTEM_CMDS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$(echo $$missing | tr ' ' '\n' | sort -u) >/dev/null; \
	fi

venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: deps
	$(PODNET) up $(DEMO_LAB)
	$(PODNET) get nodes -o wide
	$(PODNET) get pods -A -o wide
	@echo; echo '$$ podnet exec pod-a -- curl -s http://10.244.2.8:8080/    # pod A (node1) -> pod B (node2), over VXLAN'
	$(PODNET) exec pod-a -- curl -s --max-time 5 http://10.244.2.8:8080/
	@echo; echo '$$ podnet exec pod-a -- curl -s my-service:8080    # by name: cluster DNS, then kube-proxy DNAT'
	@for i in 1 2 3 4 5 6 7 8 9 10; do $(PODNET) exec pod-a -- curl -s --max-time 2 my-service:8080 >/dev/null 2>&1 && break; sleep 0.5; done
	$(PODNET) exec pod-a -- curl -s --max-time 5 my-service:8080
	@echo; echo '$$ podnet get endpoints my-service'
	$(PODNET) get endpoints my-service
	@echo; echo '$$ podnet exec --node node1 -- iptables -t nat -L KUBE-SERVICES -n'
	$(PODNET) exec --node node1 -- iptables -t nat -L KUBE-SERVICES -n
	@echo; echo '$$ podnet exec --node node1 -- ip route'
	$(PODNET) exec --node node1 -- ip route
	@echo; echo '$$ podnet exec --node node1 -- bridge fdb show dev flannel.1'
	$(PODNET) exec --node node1 -- bridge fdb show dev flannel.1
	@echo; echo "The lab keeps running. Try: $(PODNET) status ; remove it with: make demo-down"

demo-down: venv
	$(PODNET) down $(DEMO_NAME)

lint: venv
	$(VENV)/bin/ruff check src tests bench

test: deps lint
	$(PY) -m pytest -q tests

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-lab: deps
	$(PY) -m pytest -q tests/lab

bench: deps
	$(PY) bench/bringup.py
	$(PY) bench/proxy_sync.py

clean:
	rm -rf $(VENV) build src/*.egg-info
