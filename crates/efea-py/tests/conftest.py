"""Fixtures shared by the pytest suite: the repository's photos, the `efea` CLI for parity,
and one small trained run (seconds on the CPU)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import efea

PACKAGE = Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[1]
PHOTOS = REPO / "tests" / "fixtures" / "photos"


@pytest.fixture(scope="session")
def solvay() -> Path:
    """The rustface crate's group photo: 30 faces for MTCNN, with landmarks."""
    return PHOTOS / "solvay_1927.png"


@pytest.fixture(scope="session")
def astronaut() -> Path:
    """scikit-image's astronaut: one face."""
    return PHOTOS / "astronaut.png"


@pytest.fixture(scope="session")
def detector() -> efea.Detector:
    return efea.Detector()


@pytest.fixture(scope="session")
def efea_cli() -> Path:
    """The `efea` binary: $EFEA_BIN, else the cargo target directory's debug build (built
    here when missing, as `cargo build -p efea-cli`)."""
    if os.environ.get("EFEA_BIN"):
        return Path(os.environ["EFEA_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = target / "debug" / "efea"
    if not binary.exists():
        cargo = shutil.which("cargo")
        assert cargo, "the CLI parity tests need `cargo` or EFEA_BIN"
        subprocess.run([cargo, "build", "-p", "efea-cli"], cwd=REPO, check=True)
    return binary


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A one-epoch run of a narrow network on 140 easy synthetic faces."""
    run = tmp_path_factory.mktemp("runs") / "tiny"
    efea.train(
        "synth",
        "count=140,level=easy",
        out=run,
        width=0.25,
        input=32,
        epochs=1,
        batch_size=16,
        lr=0.05,
        no_tencrop=True,
    )
    return run
