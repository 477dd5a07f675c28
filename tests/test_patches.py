"""Every patch in patches/ applies to a copy of the installed verl and does what patches/README.md says."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import verl

PATCHES = sorted((Path(__file__).parent.parent / "patches").glob("*.patch"))

pytestmark = pytest.mark.skipif(shutil.which("patch") is None, reason="the `patch` program is not installed")


@pytest.fixture(scope="module")
def patched_verl(tmp_path_factory):
    root = tmp_path_factory.mktemp("verl_copy")
    shutil.copytree(Path(verl.__file__).parent, root / "verl", ignore=shutil.ignore_patterns("__pycache__"))
    for patch in PATCHES:
        res = subprocess.run(
            ["patch", "-p1", "-d", str(root), "-i", str(patch)], capture_output=True, text=True
        )
        assert res.returncode == 0, (
            f"{patch.name} no longer applies to verl {verl.__version__}:\n{res.stdout}"
        )
    return root


def run_in(root: Path, code: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(root), "VERL_USE_EXTERNAL_PLUGINS": "none", "PATH": ""}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_there_are_patches():
    assert PATCHES


def test_0001_resource_pool_manager_builds_cpu_pools(patched_verl):
    code = (
        f"import verl; assert verl.__file__.startswith({str(patched_verl)!r})\n"
        "from verl.single_controller.ray.base import ResourcePoolManager\n"
        "m = ResourcePoolManager(resource_pool_spec={'envs': [2]}, mapping={}, use_gpu=False)\n"
        "m.create_resource_pool()\n"
        "assert m.resource_pool_dict['envs'].use_gpu is False\n"
        "assert ResourcePoolManager(resource_pool_spec={}, mapping={}).use_gpu is True  # default unchanged\n"
    )
    res = run_in(patched_verl, code)
    assert res.returncode == 0, res.stderr


def test_0002_auto_padding_leaves_the_callers_batch_alone(patched_verl):
    code = (
        "import torch\n"
        "from verl import DataProto\n"
        "from verl.single_controller.base.decorator import _split_args_kwargs_data_proto_with_auto_padding as split\n"
        "d = DataProto.from_dict({'x': torch.arange(3.)}, auto_padding=True)\n"
        "args, kwargs = split(2, d)\n"
        "assert len(d) == 3, len(d)\n"
        "assert [len(c) for c in args[0]] == [2, 2] and list(kwargs.values()) == [1]\n"
    )
    res = run_in(patched_verl, code)
    assert res.returncode == 0, res.stderr
