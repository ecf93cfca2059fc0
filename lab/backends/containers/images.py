"""The lab node image: built without a registry, tagged by its content.

Base: by default a Debian root built locally from Debian's packages (debootstrap into a folder,
then `docker import`), because many machines cannot pull images; or any registry image given with
`--base` (the packages are then installed with apt inside the build). The node image adds the
role programs. Tags are hashes of what goes in, so a changed role program is never run from a
stale image and an unchanged image is never rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lab
from lab.backends.containers.engine import api_error, connect
from lab.errors import EnvironmentProblem

PACKAGE = Path(lab.__file__).resolve().parent
IMAGES = PACKAGE.parent / "images"
ROLES = PACKAGE / "roles"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
LOCAL_BASE = "debootstrap"
HOST_PACKAGES = "host-packages.txt"

Progress = Callable[[str], None]


def packages(listing: str = "packages.txt") -> list[str]:
    lines = (IMAGES / listing).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:12]


def payload() -> list[tuple[str, bytes]]:
    """The files copied into the image: the lab package marker and the role programs."""
    files = [("lab/__init__.py", b'"""lab role programs (image copy)."""\n')]
    for path in sorted(ROLES.glob("*.py")):
        files.append((f"lab/roles/{path.name}", path.read_bytes()))
    return files


def base_tag() -> str:
    return f"lab-base:{SUITE}-{_digest(SUITE.encode(), MIRROR.encode(), ' '.join(packages()).encode())}"


def host_tag() -> str:
    """The simulated cluster's host image: Debian with its Docker engine (docker-in-docker)."""
    listing = " ".join(packages(HOST_PACKAGES)).encode()
    return f"lab-host:{SUITE}-{_digest(SUITE.encode(), MIRROR.encode(), listing)}"


def build_host(progress: Progress = print) -> str:
    """Build (or find) the host image of `lab cluster up`; returns its tag."""
    client = connect()
    try:
        tag = host_tag()
        if exists(client, tag):
            progress(f"image {tag} is up to date")
        else:
            _debootstrap_base(client, tag, packages(HOST_PACKAGES), progress)
        return tag
    finally:
        client.close()


def node_tag(base: str = LOCAL_BASE) -> str:
    parts = [base.encode(), (IMAGES / "Dockerfile.in").read_bytes(), " ".join(packages()).encode()]
    parts += [name.encode() + data for name, data in payload()]
    return f"lab-node:{_digest(*parts)}"


def exists(client: Any, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as e:
        raise api_error(f"inspect image {tag}", e) from None


def build(base: str = LOCAL_BASE, progress: Progress = print) -> str:
    """Build (or find) the node image; returns its tag."""
    client = connect()
    tag = node_tag(base)
    if exists(client, tag):
        progress(f"image {tag} is up to date")
        return tag
    if base == LOCAL_BASE:
        base_image = base_tag()
        if not exists(client, base_image):
            _debootstrap_base(client, base_image, packages(), progress)
        install = ""
    else:
        base_image = base
        install = ("RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                   f"--no-install-recommends {' '.join(packages())} && rm -rf /var/lib/apt/lists/*")
    t = time.monotonic()
    dockerfile = (IMAGES / "Dockerfile.in").read_text().format(base=base_image, install=install,
                                                               content=tag.split(":")[1])
    context = _context(dockerfile)
    try:
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, forcerm=True,
                            pull=False, labels={"lab.image": "node"})
    except Exception as e:  # noqa: BLE001 - BuildError / APIError, both reported the same way
        raise api_error(f"build {tag}", e) from None
    progress(f"image {tag} built in {time.monotonic() - t:.1f}s (base {base_image})")
    return tag


def _context(dockerfile: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [("Dockerfile", dockerfile.encode()), *payload()]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def _debootstrap_base(client: Any, tag: str, listing: list[str], progress: Progress) -> None:
    if shutil.which("debootstrap") is None:
        raise EnvironmentProblem("debootstrap is needed to build the image without a registry: "
                                 "apt-get install debootstrap (or use --base IMAGE)")
    progress(f"building {tag} from Debian's packages (debootstrap {SUITE}, about a minute)")
    t = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lab-rootfs-") as root:
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(listing)}", SUITE, root, MIRROR]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise EnvironmentProblem(f"debootstrap failed: {' | '.join(tail)}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (Path(root) / junk).glob("*.deb" if "archives" in junk else "*_*"):
                p.unlink()
        repo, _, version = tag.partition(":")
        tar = subprocess.Popen(["tar", "-C", root, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            assert tar.stdout is not None
            client.api.import_image_from_stream(tar.stdout, repository=repo, tag=version)
        except Exception as e:  # noqa: BLE001
            raise api_error(f"import {tag}", e) from None
        finally:
            tar.wait()
    progress(f"base {tag} imported in {time.monotonic() - t:.1f}s")
