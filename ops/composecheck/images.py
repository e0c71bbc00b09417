"""Images for the compose check without a registry: a debootstrap base, stand-ins, their cache.

The base is Debian bookworm (minbase) made with debootstrap from the mirror apt uses and
imported as BASE_TAG. Each stand-in (standins/NAME/Dockerfile, FROM that base) is tagged under
the upstream name compose.yml or a Dockerfile uses (``upstream_names``), so the shipped files
build and run unchanged. Every image made here carries the label LABEL whose value is a digest
of what it was made from: an image with the same digest is reused (the base always, unless
asked), an image under an upstream name WITHOUT the label is a real one and is left alone.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from ops import prereqs
from ops.composecheck.host import docker
from ops.prereqs import SetupError

log = logging.getLogger(__name__)

LABEL = "org.qserver.compose-check"
BASE_TAG = "qserver-check/debian:bookworm"
SUITE = "bookworm"
STANDINS_DIR = Path(__file__).with_name("standins")
STANDINS = ("python", "postgres", "rabbitmq", "nginx")  # standins/<name>: what they stand for
CA_DIR = Path("/usr/local/share/ca-certificates")  # this machine's extra CA certificates
BASE_RECIPE = "debootstrap --variant=minbase v1"  # change to make every cached base stale


def image_key(tag: str) -> str | None:
    """The LABEL of image ``tag``: None when there is no such image, "" for one made elsewhere."""
    proc = subprocess.run(
        [docker(), "image", "inspect", "--format", f'{{{{ index .Config.Labels "{LABEL}" }}}}', tag],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    value = proc.stdout.strip()
    return "" if value in ("", "<no value>") else value


def image_id(tag: str) -> str:
    """The id of image ``tag``.

    Raises:
        SetupError: there is no such image.
    """
    return prereqs._run([docker(), "image", "inspect", "--format", "{{.Id}}", tag], what=f"inspecting {tag}").strip()


def upstream_names(root: Path) -> dict[str, str]:
    """{stand-in: upstream image name} for every image the Dockerfiles and `docker compose up` pull.

    Raises:
        SetupError: one of them has no stand-in here.
    """
    names = []
    for dockerfile in (root / "Dockerfile", root / "nginx" / "Dockerfile"):
        names += re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), re.M)
    services = yaml.safe_load((root / "compose.yml").read_text())["services"]
    # services under a profile (e.g. monitoring) are not started by a plain `up`
    names += [s["image"] for s in services.values() if "build" not in s and "image" in s and "profiles" not in s]
    found = {}
    for name in names:
        repository = name.split("@")[0].rsplit(":", 1)[0].rsplit("/", 1)[-1]
        if repository not in STANDINS:
            raise SetupError(f"{name} has no stand-in in {STANDINS_DIR} (there are {', '.join(STANDINS)})")
        found[repository] = name
    return found


def ensure_base(mirror: str, work: Path, *, rebuild: bool = False) -> str:
    """BASE_TAG, made with debootstrap unless an image of the same recipe exists; its id.

    Raises:
        SetupError: debootstrap or the import failed.
    """
    key = hashlib.sha256(f"{BASE_RECIPE} {SUITE} {mirror}".encode()).hexdigest()[:16]
    if not rebuild and image_key(BASE_TAG) == key:
        log.info("base %s: cached", BASE_TAG)
        return image_id(BASE_TAG)
    work.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=work))
    try:
        log.info("base %s: debootstrap %s from %s (minutes)", BASE_TAG, SUITE, mirror)
        prereqs._run(
            prereqs._privileged(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirror]),
            what="debootstrap",
        )
        sources = f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
        script = (
            f"printf '%s' '{sources}' > {rootfs}/etc/apt/sources.list"
            f" && printf 'APT::Install-Recommends \"false\";\\n' > {rootfs}/etc/apt/apt.conf.d/90no-recommends"
            f" && rm -rf {rootfs}/var/lib/apt/lists/* {rootfs}/var/cache/apt/*.bin"
            f" {rootfs}/var/cache/apt/archives/*.deb"
            f" && tar -C {rootfs} --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -c ."
            f" | {docker()} import --change 'CMD [\"bash\"]' --change 'LABEL {LABEL}={key}' - {BASE_TAG}"
        )
        prereqs._run(prereqs._privileged(["sh", "-c", script]), what="importing the base image")
    finally:
        subprocess.run(prereqs._privileged(["rm", "-rf", str(rootfs)]), check=False)
    return image_id(BASE_TAG)


def _context(name: str, into: Path) -> Path:
    """The build context of stand-in ``name``: its folder, plus ca/ (this machine's extra CAs)."""
    context = into / name
    shutil.copytree(STANDINS_DIR / name, context)
    if name == "python":
        (context / "ca").mkdir()
        for cert in sorted(CA_DIR.rglob("*.crt")) if CA_DIR.is_dir() else []:
            shutil.copy(cert, context / "ca" / cert.name)
    return context


def _digest(context: Path, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_standins(names: dict[str, str], base_id: str, work: Path) -> dict[str, str]:
    """Build each stand-in under its upstream name unless cached or a real image is there.

    Returns {upstream name: "built", "cached" or "real image"}.

    Raises:
        SetupError: a build failed (the message has the end of its output).
    """
    done = {}
    with tempfile.TemporaryDirectory(prefix="standins-", dir=work) as tmp:
        for standin, upstream in names.items():
            context = _context(standin, Path(tmp))
            key = _digest(context, base_id)
            existing = image_key(upstream)
            if existing == "":
                done[upstream] = "real image"
                continue
            if existing == key:
                done[upstream] = "cached"
                continue
            log.info("stand-in %s: building from %s", upstream, context.name)
            prereqs._run(
                [
                    docker(),
                    "build",
                    "--build-arg",
                    f"BASE={BASE_TAG}",
                    "--label",
                    f"{LABEL}={key}",
                    "--tag",
                    upstream,
                    str(context),
                ],
                what=f"building the stand-in for {upstream}",
            )
            done[upstream] = "built"
    return done


def remove_images(project_images: list[str]) -> list[str]:
    """Remove every image this check made (the base and stand-ins: LABEL; the project's
    ``project_images``); returns what was removed."""
    listed = subprocess.run(
        [docker(), "image", "ls", "--filter", f"label={LABEL}", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    ours = [tag for tag in [*project_images, *listed] if image_key(tag) not in (None, "")]
    ours = list(dict.fromkeys(ours))
    if ours:
        subprocess.run([docker(), "image", "rm", *ours], capture_output=True, check=False)
    return ours
