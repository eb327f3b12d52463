"""Processes podnet runs: the built-in pod server and the cluster's components (kube-system pods)."""
