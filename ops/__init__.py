"""The operator's tools: the `qserver` CLI, starting the local stack, nginx configuration,
certificates, Ray nodes, prerequisites and the state dir. No service imports this package."""
