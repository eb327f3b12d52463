"""Side effects only: network namespaces, links, addresses, routes, rules, processes, files."""
