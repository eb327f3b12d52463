"""The lab's Kubernetes API server: real kubectl and the official Python client work against a lab.

Layout: ``resources`` (what is served), ``discovery``/``openapi`` (what clients read first), ``tables``
(server-side printing), ``selectors``, ``patch`` and ``schema`` (pure request logic), ``view`` (the
served objects, derived from the lab's store and written back to it under ``/podnet/api/``), ``writes``
(create/update/patch/delete through the same path as ``podnet apply``), ``server`` (HTTP), ``logs`` and
``exec_`` (subresources), ``tls``/``kubeconfig``/``process`` (running it next to a lab).
"""
