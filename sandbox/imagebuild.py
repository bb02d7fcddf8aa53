"""Build the sandbox image offline: debootstrap a Debian root, ``docker import`` it, add the runtime.

No image registry is needed. The image is built in two layers so that editing the in-container runtime
costs a second, not a debootstrap:

- ``durable-rlm-sandbox-base:<hash>``: a minbase Debian root filesystem with the packages of
  ``image/packages.txt`` and the non-root user; its tag hashes the base recipe.
- ``durable-rlm-sandbox:<hash>``: the base plus ``runtime/`` copied to ``/opt/rlm``; its tag hashes the base
  tag and every runtime file, so the image is rebuilt exactly when something that goes into it changes.

The Debian mirror is read from the machine's apt sources (or ``RLM_DEBIAN_MIRROR``); none is written here.
``python -m sandbox.imagebuild`` builds what is missing and prints the image reference; with ``--prune``
it also removes this project's older sandbox images that no container uses. Each source change that
reaches the runtime makes a new image, and nothing removes the old ones by itself: a worker of an older
version still running on the same engine starts its containers from its own image, so pruning is the
operator's call once every worker there runs the current version.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

IMAGE_REPOSITORY = "durable-rlm-sandbox"
BASE_REPOSITORY = "durable-rlm-sandbox-base"
SUITE = "bookworm"
SANDBOX_UID = 10001
# The sandbox user's home is the container's private tmpfs, never a host path.
SANDBOX_HOME = "/tmp"  # noqa: S108

_PACKAGE_DIR = Path(__file__).resolve().parent
_IMAGE_DIR = _PACKAGE_DIR / "image"
_RUNTIME_DIR = _PACKAGE_DIR / "runtime"
# Bump when the way the base is assembled changes, so that existing base images are not reused.
_BASE_RECIPE_VERSION = "1"
_FINAL_RECIPE_VERSION = "1"
_IMAGE_CHANGES = [
    f"USER {SANDBOX_UID}:{SANDBOX_UID}",
    f"WORKDIR {SANDBOX_HOME}",
    f"ENV HOME={SANDBOX_HOME}",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    "ENV PYTHONUNBUFFERED=1",
    "ENV LANG=C.UTF-8",
]


class ImageBuildError(RuntimeError):
    """Building the sandbox image failed; the message names the step and what to do."""


@dataclass(frozen=True)
class ImagePlan:
    base_ref: str
    image_ref: str
    packages: tuple[str, ...]


def _packages() -> tuple[str, ...]:
    lines = (_IMAGE_DIR / "packages.txt").read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def _runtime_files() -> list[Path]:
    if not _RUNTIME_DIR.is_dir():
        return []
    return sorted(
        p
        for p in _RUNTIME_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def plan() -> ImagePlan:
    packages = _packages()
    base = hashlib.sha256()
    base.update(f"recipe={_BASE_RECIPE_VERSION};suite={SUITE};uid={SANDBOX_UID};".encode())
    base.update(("packages=" + ",".join(packages)).encode())
    base_ref = f"{BASE_REPOSITORY}:{base.hexdigest()[:16]}"

    final = hashlib.sha256()
    final.update(f"recipe={_FINAL_RECIPE_VERSION};base={base_ref};".encode())
    final.update(repr(_IMAGE_CHANGES).encode())
    for path in _runtime_files():
        final.update(str(path.relative_to(_RUNTIME_DIR)).encode() + b"\0")
        final.update(path.read_bytes() + b"\0")
    return ImagePlan(
        base_ref=base_ref, image_ref=f"{IMAGE_REPOSITORY}:{final.hexdigest()[:16]}", packages=packages
    )


def image_ref() -> str:
    """The reference of the image that matches the current sources (built or not)."""
    return plan().image_ref


def _say(message: str) -> None:
    print(f"[sandbox-image] {message}", file=sys.stderr, flush=True)


def _image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    return True


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive URI this machine's apt is configured with (deb822 or one-line format)."""
    override = os.environ.get("RLM_DEBIAN_MIRROR")
    if override:
        return override
    candidates: list[str] = []
    for path in sorted((sources_dir / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            suites = fields.get("suites", "").split()
            if (
                "deb" in fields.get("types", "").split()
                and SUITE in suites
                and fields.get("enabled", "yes") != "no"
            ):
                candidates.extend(fields.get("uris", "").split())
    legacy = [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*.list"))]
    for path in legacy:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = (
                [w for w in line.split() if not w.startswith("[")]
                if not line.lstrip().startswith("#")
                else []
            )
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                candidates.append(words[1])
    if not candidates:
        raise ImageBuildError(
            f"no Debian mirror serving '{SUITE}' found in {sources_dir}/sources.list(.d); "
            "set RLM_DEBIAN_MIRROR to the archive URI your apt uses"
        )
    return candidates[0]


def _run(step: str, argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ImageBuildError(f"{step} failed (exit {proc.returncode}): {' '.join(argv[:3])} …\n{tail}")


def _build_base(client: docker.DockerClient, built: ImagePlan) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            "debootstrap is not installed; run ops/setup.sh (or apt-get install debootstrap)"
        )
    if os.geteuid() != 0:
        raise ImageBuildError("debootstrap needs root; run ops/setup.sh as root or through sudo")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="rlm-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _say(f"debootstrap {SUITE} (minbase + {', '.join(built.packages)}) — takes a few minutes")
        _run(
            "debootstrap",
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(built.packages)}",
                SUITE,
                str(root),
                mirror,
            ],
        )
        _run("create sandbox group", ["chroot", str(root), "groupadd", "-g", str(SANDBOX_UID), "sandbox"])
        _run(
            "create sandbox user",
            [
                "chroot",
                str(root),
                "useradd",
                "-u",
                str(SANDBOX_UID),
                "-g",
                str(SANDBOX_UID),
                "-M",
                "-d",
                SANDBOX_HOME,
                "-s",
                "/usr/sbin/nologin",
                "sandbox",
            ],
        )
        # The image never runs apt; caches and docs only make it bigger.
        for junk in (
            "var/cache/apt",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/info",
        ):
            shutil.rmtree(root / junk, ignore_errors=True)
        tar_path = Path(tmp) / "rootfs.tar"
        _say(f"importing root filesystem as {built.base_ref}")
        with tarfile.open(tar_path, "w") as tar:
            tar.add(root, arcname=".")
        repository, tag = built.base_ref.split(":")
        client.api.import_image_from_file(str(tar_path), repository=repository, tag=tag)
    if not _image_exists(client, built.base_ref):
        raise ImageBuildError(f"docker import did not produce {built.base_ref}")


def _runtime_archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("rlm")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        tar.addfile(directory)
        for path in _runtime_files():
            info = tarfile.TarInfo(f"rlm/{path.relative_to(_RUNTIME_DIR)}")
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _build_final(client: docker.DockerClient, built: ImagePlan) -> None:
    _say(f"adding the runtime to {built.image_ref}")
    container = client.containers.create(built.base_ref, command=["true"], network_disabled=True)
    try:
        if not container.put_archive("/opt", _runtime_archive()):
            raise ImageBuildError("copying the runtime into the image failed")
        repository, tag = built.image_ref.split(":")
        container.commit(repository=repository, tag=tag, changes=_IMAGE_CHANGES)
    finally:
        container.remove(force=True)


def ensure_image(client: docker.DockerClient | None = None) -> str:
    """Build whatever layer is missing and return the image reference; a no-op when both exist."""
    built = plan()
    client = client or docker.from_env()
    if _image_exists(client, built.image_ref):
        return built.image_ref
    if not _image_exists(client, built.base_ref):
        _build_base(client, built)
    _build_final(client, built)
    return built.image_ref


def prune_images(
    client: docker.DockerClient,
    keep: ImagePlan,
    repositories: tuple[str, ...] = (IMAGE_REPOSITORY, BASE_REPOSITORY),
) -> list[str]:
    """Remove the images of ``repositories`` (final images first, then their bases) other than ``keep``'s
    that no container, running or stopped, was created from; returns the removed tags."""
    used = {container.attrs.get("Image") for container in client.containers.list(all=True)}
    kept = {keep.image_ref, keep.base_ref}
    removed: list[str] = []
    for repository in repositories:
        for image in client.images.list(name=repository):
            if image.id in used or kept & set(image.tags):
                continue
            for tag in image.tags:
                try:
                    client.images.remove(tag)
                except docker.errors.APIError as exc:  # a container created meanwhile, a child image
                    _say(f"kept {tag}: {exc.explanation or exc}")
                    continue
                removed.append(tag)
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.imagebuild",
        description="Build the sandbox image of the current sources if it is missing; print its reference.",
    )
    parser.add_argument(
        "--prune",
        action="store_true",
        help="also remove older sandbox images that no container uses (once every worker on this "
        "Docker engine runs the current version)",
    )
    args = parser.parse_args(argv)
    try:
        client = docker.from_env()
        ref = ensure_image(client)
        if args.prune:
            for tag in prune_images(client, plan()):
                _say(f"removed {tag}")
    except ImageBuildError as exc:
        _say(f"error: {exc}")
        return 1
    except docker.errors.DockerException as exc:
        _say(f"error: cannot talk to the Docker engine ({exc}); start it with ops/setup.sh")
        return 1
    print(ref)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
