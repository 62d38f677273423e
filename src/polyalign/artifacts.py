"""The artifact folders that stages write and read: each class owns its folder's layout (which file holds
what) and its summary (the few numbers a pipeline's stage.json shows), so that no stage reads another stage's
files by a string key of its own.

    DataBuild(dir).records_dir          ModelDir(dir).path             Predictions(dir).file
    Critic(dir).metrics                 Pairs(dir).file                Suite(dir).manifest
    Evaluation(dir).metrics_file        Comparison(dir).file           RoundsTable(dir).file
    each: .summary()
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .io import read_json


@dataclass(frozen=True)
class Artifact:
    """A folder written by one stage."""

    path: Path
    manifest_name: ClassVar[str] = "manifest.json"

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def manifest_file(self) -> Path:
        """The folder's manifest (config, inputs, versions, seed, wall time)."""
        return self.path / self.manifest_name

    def manifest(self) -> dict[str, Any]:
        """The manifest, or {} when the folder has none."""
        return read_json(self.manifest_file) if self.manifest_file.exists() else {}

    def summary(self) -> dict[str, Any]:
        """The numbers a stage listing shows for this artifact."""
        return {}


def _pick(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: mapping[k] for k in keys if mapping.get(k) is not None}


class DataBuild(Artifact):
    """`polyalign data build`: records/<split>.jsonl, features, references, buckets.json, report.json."""

    @property
    def records_dir(self) -> Path:
        """records/{train,val,test}.jsonl."""
        return self.path / "records"

    def summary(self) -> dict[str, Any]:
        built = self.manifest().get("summary", {})
        out = _pick(built, "records", "conversations", "splits")
        buckets = built.get("buckets")
        if buckets is not None:
            out["buckets"] = buckets if isinstance(buckets, int) else len(buckets)
        return out


class ModelDir(Artifact):
    """A trained (or pretrained) HF model folder with its manifest."""

    def summary(self) -> dict[str, Any]:
        manifest = self.manifest()
        out = _pick(manifest, "method", "train_loss", "n_parameters", "n_train_examples", "n_train_pairs",
                    "global_steps")
        val = (manifest.get("final_bucket_losses") or {}).get("val") or {}
        out.update({f"val_{k}": val[k] for k in ("macro", "spread", "worst_bucket", "worst_loss") if k in val})
        return out


class ExternalModel(Artifact):
    """A base model the pipeline does not build (a hub id or a folder elsewhere), named in `base.json`."""

    def summary(self) -> dict[str, Any]:
        return {"model": read_json(self.path).get("model")}


class Predictions(Artifact):
    """`polyalign generate`: predictions.jsonl plus its manifest."""

    @property
    def file(self) -> Path:
        """predictions.jsonl (id, sample, bucket fields, prediction, finish)."""
        return self.path / "predictions.jsonl"

    def summary(self) -> dict[str, Any]:
        return _pick(self.manifest(), "n_rows", "n_prompts_cut", "new_tokens", "tokens_per_second")


class Critic(Artifact):
    """`polyalign critic fit`: critic.pt, critic.json, metrics.json, baseline.json."""

    @property
    def metrics_file(self) -> Path:
        """metrics.json (held-out AUC, collapse check)."""
        return self.path / "metrics.json"

    def summary(self) -> dict[str, Any]:
        metrics = read_json(self.metrics_file) if self.metrics_file.exists() else {}
        return _pick(metrics, "heldout_auc", "within_bucket_auc", "passes_collapse_check")


class Pairs(Artifact):
    """`polyalign pairs build`: pairs.jsonl and summary.json."""

    @property
    def file(self) -> Path:
        """pairs.jsonl."""
        return self.path / "pairs.jsonl"

    def summary(self) -> dict[str, Any]:
        path = self.path / "summary.json"
        built = read_json(path) if path.exists() else {}
        return _pick(built, "n_pairs", "by_type")


class SuiteDir(Artifact):
    """`polyalign suite`: items, pool, their features and the manifest (see polyalign.eval.suite)."""

    def summary(self) -> dict[str, Any]:
        manifest = self.manifest()
        out = _pick(manifest, "suite_version", "n_items", "n_pool", "context_key")
        if "groups" in manifest:
            out["groups"] = len(manifest["groups"])
        return out


class Evaluation(Artifact):
    """`polyalign eval`: metrics.json, report.md, report.html, plot_data.npz."""

    @property
    def metrics_file(self) -> Path:
        """metrics.json."""
        return self.path / "metrics.json"

    def summary(self) -> dict[str, Any]:
        if not self.metrics_file.exists():
            return {}
        result = read_json(self.metrics_file)
        context = result.get("headline", {}).get("context", {}).get("model", {}).get("summary", {})
        out = {m: block["overall"]["value"] for m, block in context.items()
               if block.get("overall", {}).get("value") is not None}
        out["n_scored"] = result.get("metadata", {}).get("gaps", {}).get("scored")
        return out


class Comparison(Artifact):
    """`polyalign compare`: comparison.json, report.md, report.html."""

    @property
    def file(self) -> Path:
        """comparison.json."""
        return self.path / "comparison.json"

    def summary(self) -> dict[str, Any]:
        if not self.file.exists():
            return {}
        result = read_json(self.file)
        tests = result.get("headline", {}).get("context", {}).get("tests", {}).get("overall", [])
        return {"methods": result.get("methods"), "tests": len(tests),
                "significant": sum(1 for t in tests if t.get("significant"))}


ROUNDS_PLOT = "rounds.png"  # the per-round plot of a rounds_<method> folder (eval/rounds_plot.py)


class RoundsTable(Artifact):
    """rounds_<method>: rounds.json, rounds.md and rounds.png (polyalign.eval.rounds), one row per round."""

    @property
    def file(self) -> Path:
        """rounds.json."""
        return self.path / "rounds.json"

    @property
    def markdown(self) -> Path:
        """rounds.md."""
        return self.path / "rounds.md"

    @property
    def plot(self) -> Path:
        """rounds.png."""
        return self.path / ROUNDS_PLOT

    def summary(self) -> dict[str, Any]:
        if not self.file.exists():
            return {}
        rows = read_json(self.file).get("rows", [])
        return {"rounds": len(rows), "critic_auc": [r.get("critic_auc") for r in rows],
                "mean_distance": [r.get("mean_distance") for r in rows]}
