"""Pure model: the cluster and its Kubernetes objects, loading, validation, defaults and IPAM."""
