"""Pure: the model -> the desired state of every namespace (links, addresses, routes, neighbours,
FDB, sysctls, rule payloads, config files). The dataplane applies it; nothing here does I/O."""
