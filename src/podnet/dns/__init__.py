"""Cluster DNS: Kubernetes DNS records (records), glibc stub-resolver rules (resolve), the wire
format (wire) and the server process run by each DNS pod (server). See docs/dns.md."""
