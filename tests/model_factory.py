"""A very small local chat model for tests: tokenizer trained on synthetic bilingual records, a 2-layer Llama.

`make_tiny_model_dir(root)` builds it once per directory (about a second) and returns the folder; it loads with
AutoModelForCausalLM / AutoTokenizer like any HF model.
"""

from __future__ import annotations

from pathlib import Path

from records_factory import make_records

from polyalign.models.tiny import TinyModelConfig, init_tiny

TEST_MODEL_CONFIG = TinyModelConfig(vocab_size=1200, hidden=32, layers=2, heads=2, intermediate=64,
                                    max_positions=512, seed=0)


def make_tiny_model_dir(root: str | Path, *, n_records: int = 300, seed: int = 0,
                        config: TinyModelConfig = TEST_MODEL_CONFIG) -> Path:
    """Build (or reuse) a tiny model folder under `root`."""
    out = Path(root) / f"tiny-{n_records}-{seed}-{config.hidden}"
    if not (out / "config.json").exists():
        init_tiny(make_records(n_records, seed), out, config)
    return out


def make_varied_tiny_model_dir(root: str | Path) -> Path:
    """The tiny test model with every non-norm weight scaled by 8: its random-init greedy output depends on the
    prompt (the unscaled one writes newlines for every prompt), so that comparing two generation paths means
    something."""
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(root) / "tiny-varied"
    if not (out / "config.json").exists():
        import shutil

        source = make_tiny_model_dir(root)
        shutil.copytree(source, out)
        model = AutoModelForCausalLM.from_pretrained(out)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "norm" not in name:
                    param.mul_(8.0)
        model.save_pretrained(out)
    return out
