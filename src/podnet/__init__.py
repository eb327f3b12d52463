"""podnet: Kubernetes pod and service networking, really running on one Linux host, and explained."""

__version__ = "0.1.0"
