"""The sandbox image builds offline, runs python3 under the hardened flags, and is rebuilt only on change."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest

from sandbox import imagebuild


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return docker.from_env()


@pytest.fixture(scope="module")
def image(client: docker.DockerClient) -> str:
    return imagebuild.ensure_image(client)


def test_stdlib_runs_locked_down(client: docker.DockerClient, image: str) -> None:
    out = client.containers.run(
        image,
        ["python3", "-c", "import json, re, pickle, collections, os; print('uid', os.getuid())"],
        network_mode="none",
        read_only=True,
        user="10001:10001",
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        remove=True,
    )
    assert out.decode().strip() == "uid 10001"


def test_default_user_is_not_root_and_runtime_is_inside(client: docker.DockerClient, image: str) -> None:
    config = client.images.get(image).attrs["Config"]
    assert config["User"] == "10001:10001"
    listing = (
        client.containers.run(image, ["ls", "/opt/rlm"], network_mode="none", remove=True).decode().split()
    )
    runtime = sorted(p.name for p in Path(imagebuild.__file__).parent.joinpath("runtime").glob("*.py"))
    assert sorted(name for name in listing if name.endswith(".py")) == runtime


def test_ensure_image_is_a_no_op_when_present(client: docker.DockerClient, image: str) -> None:
    before = client.images.get(image).id
    assert imagebuild.ensure_image(client) == image
    assert client.images.get(image).id == before


def test_tag_follows_runtime_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "repl.py").write_text("print('a')\n")
    monkeypatch.setattr(imagebuild, "_RUNTIME_DIR", runtime)
    first = imagebuild.plan()
    assert imagebuild.plan() == first
    (runtime / "repl.py").write_text("print('b')\n")
    second = imagebuild.plan()
    assert second.image_ref != first.image_ref
    assert second.base_ref == first.base_ref


def test_mirror_read_from_deb822_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert imagebuild.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_read_from_one_line_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://old.example/debian bookworm main\n"
    )
    assert imagebuild.debian_mirror(tmp_path) == "http://old.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    with pytest.raises(imagebuild.ImageBuildError, match="RLM_DEBIAN_MIRROR"):
        imagebuild.debian_mirror(tmp_path)
