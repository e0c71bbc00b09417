"""The compose check: compose.yml built and run end to end on one machine without an image registry.

``.ci/compose-check`` (``python -m ops.composecheck``), minutes, not part of ``.ci/run``:

1. ``host``: Docker from Debian's packages (``docker.io``; its daemon started if none runs) and
   compose v2 and buildx (Debian trixie's ``docker-compose`` and ``docker-buildx`` unpacked into
   a Docker CLI plugins folder, where missing);
2. ``images``: a Debian bookworm base made with debootstrap from the mirror apt uses (cached
   between runs), stand-ins for the upstream images compose.yml and the Dockerfiles name
   (python, postgres, rabbitmq, nginx: Debian packages and small entrypoints of ours, tagged
   under the upstream names, never over a real image), then the project's images from the
   shipped Dockerfiles with `docker compose build`;
3. ``run``: `docker compose up` under a project name of its own on loopback ports that clash
   with neither `qserver up` nor the test stack, waits for every service to be healthy, runs a
   Bell job with our client (an API key, plain text and TLS against the CA the `certs` tool
   made), then with the trusted-LAN override (compose.trusted-lan.yml) one with the upstream
   client qserver-connect (plain text and TLS), and tears down what it started
   (`compose down -v`).
"""
