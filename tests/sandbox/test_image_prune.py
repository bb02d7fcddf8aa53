"""``python -m sandbox.imagebuild --prune``: older sandbox images go unless a container was made from one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from sandbox.imagebuild import ImagePlan, prune_images


@pytest.fixture
def repositories(docker_client: docker.DockerClient) -> Iterator[tuple[str, str]]:
    """A final and a base repository of this test's own, so no real sandbox image is touched."""
    name = f"durable-rlm-pytest-{uuid.uuid4().hex[:10]}"
    yield name, f"{name}-base"
    for repository in (name, f"{name}-base"):
        for image in docker_client.images.list(name=repository):
            for container in docker_client.containers.list(all=True, filters={"ancestor": image.id}):
                container.remove(force=True)
            docker_client.images.remove(image.id, force=True)


def _image(client: docker.DockerClient, source: str, ref: str) -> str:
    """A new image (its own id) tagged ``ref``, committed from a container of ``source``."""
    repository, tag = ref.split(":")
    container = client.containers.create(source, command=["true"], network_disabled=True)
    try:
        image = container.commit(repository=repository, tag=tag)
    finally:
        container.remove(force=True)
    return str(image.id)


def test_prune_keeps_the_current_images_and_those_containers_use(
    docker_client: docker.DockerClient, sandbox_image: str, repositories: tuple[str, str]
) -> None:
    final, base = repositories
    keep = ImagePlan(base_ref=f"{base}:current", image_ref=f"{final}:current", packages=())
    for ref in (keep.base_ref, keep.image_ref, f"{base}:old", f"{final}:old", f"{final}:in-use"):
        _image(docker_client, sandbox_image, ref)
    holder = docker_client.containers.create(f"{final}:in-use", command=["true"], network_disabled=True)

    removed = prune_images(docker_client, keep, repositories=(final, base))

    assert sorted(removed) == sorted([f"{final}:old", f"{base}:old"])
    images = [image for repo in repositories for image in docker_client.images.list(name=repo)]
    left = {tag for image in images for tag in image.tags}
    assert left == {keep.image_ref, keep.base_ref, f"{final}:in-use"}
    holder.remove(force=True)
    assert prune_images(docker_client, keep, repositories=(final, base)) == [f"{final}:in-use"]
