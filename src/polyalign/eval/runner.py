"""`evaluate`: score one method's predictions on a suite and write metrics.json, report.md and report.html."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.decomposition import PCA

from ..io import atomic_path, make_manifest, write_json, write_text
from . import browser, conditional, plots, report
from .featurizers import CharNgramSVD, make_featurizer
from .predictions import load_predictions
from .scoring import HumanSide, Timings, model_headline_views, model_side_inputs, prepare_human_side, score_side
from .suite import FeatureFn, Suite, default_feature_fn, load_suite
from .summary import build_metrics_block
from .threads import single_threaded


def _cache_dir(suite: Suite, out_dir: Path) -> Path:
    """The suite's cache/ when writable (shared by every method), else the run's own."""
    cache = suite.path / "cache"
    try:
        cache.mkdir(exist_ok=True)
        probe = cache / ".write-test"
        probe.write_text("")
        probe.unlink()
        return cache
    except OSError:
        return out_dir / "cache"


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[str], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scoring buckets", total=total)

        def advance(label: str) -> None:
            bar.update(task, advance=1, description=f"scoring {label[:48]}")

        yield advance


def _projection(human: HumanSide, suite: Suite, model_embeddings: np.ndarray, present: np.ndarray) -> dict:
    """2-D coordinates (PCA fit on the pool's embeddings) of pool, held-out humans and the model."""
    pca = PCA(n_components=2, random_state=0).fit(human.pool_embeddings)
    model_xy = np.full((len(suite.items), 2), np.nan)
    if present.any():
        model_xy[present] = pca.transform(model_embeddings[present])
    return {"pool_xy": pca.transform(human.pool_embeddings), "human_xy": pca.transform(human.item_embeddings),
            "model_xy": model_xy}


def evaluate(predictions_path: str | Path, suite_dir: str | Path, out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Score predictions.jsonl on a suite; write metrics.json, report.md, report.html, plot_data.npz and
    manifest.json to out_dir; return the metrics dict. Keyword options: see `_evaluate`."""
    with single_threaded():
        return _evaluate(predictions_path, suite_dir, out_dir, **kwargs)


def _evaluate(predictions_path: str | Path, suite_dir: str | Path, out_dir: str | Path, *,
             featurizer: str = CharNgramSVD.name, featurizer_options: dict[str, Any] | None = None, seed: int = 0,
             sample: int | None = None, allow_missing: bool = False, name: str | None = None,
             feature_fn: FeatureFn | None = None, feature_names: Sequence[str] | None = None,
             progress: bool = False, figures: bool = True,
             extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """`evaluate` with its options: the MAUVE featurizer and its options, the seed of every sampled metric, the
    sample index to score, whether missing predictions are reported instead of refused, the method name,
    the feature extractor (default: polyalign.data.features), a progress bar, and whether report.html gets its
    figures (they take a few seconds; tests turn them off)."""
    started = time.time()
    if feature_fn is None:
        feature_fn, feature_names = default_feature_fn()
    suite = load_suite(suite_dir, feature_names=feature_names)
    preds = load_predictions(predictions_path, suite, sample=sample, allow_missing=allow_missing)
    options = dict(featurizer_options or {})
    if featurizer == CharNgramSVD.name:
        options.setdefault("seed", seed)
    feat = make_featurizer(featurizer, **options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    human_timings, model_timings = Timings(), Timings()
    with _progress(progress, 2 * len(suite.buckets)) as advance:
        human = prepare_human_side(suite, feat, seed=seed, cache_dir=_cache_dir(suite, out_dir), advance=advance,
                                   timings=human_timings, feature_fn=feature_fn)
        inputs = model_side_inputs(human, suite, preds.texts, feature_fn, timings=model_timings)
        model = score_side(suite, human, texts=inputs["texts"], features=inputs["features"],
                           embeddings=inputs["embeddings"], lengths=inputs["lengths"], coupling=inputs["coupling"],
                           seed=seed, is_human=False, present=inputs["present"], advance=advance,
                           timings=model_timings)
    with model_timings("headline views (bootstrap)"):
        sides = {**model_headline_views(suite, human, inputs, seed=seed), **human.human_views}
    info = {b: suite.bucket_info(b) for b in suite.buckets}
    metrics = build_metrics_block(model, human.ceiling, info)
    result: dict[str, Any] = {
        "metadata": {
            "name": name or out_dir.name, "suite_version": suite.version, "suite_dir": str(suite.path),
            "split": suite.split,
            "predictions": str(preds.path), "predictions_sha256": preds.sha256,
            "predictions_manifest": preds.manifest, "sample": preds.sample, "n_items": len(suite.items),
            "n_buckets": len(suite.buckets), "featurizer": human.featurizer_spec, "seed": seed,
            "feature_names": suite.feature_names, "length_edges": list(suite.length_edges),
            "gaps": preds.gaps, "human_cache_key": human.key, **(extra_metadata or {})},
        "buckets": {b: {**info[b], "n_items": len(suite.item_rows(b)), "n_scored": model["n"][b],
                        "n_pool": len(suite.pool_rows(b))} for b in suite.buckets},
        "headline": {view: {side: views[view] for side, views in sides.items()} for view in ("context", "oracle")},
        "context_key": list(suite.context_key),
        "reach": length_reach(inputs["lengths"], inputs["present"], preds.finish, suite),
        "metrics": metrics,
    }
    plot_data = {**_projection(human, suite, inputs["embeddings"], inputs["present"]),
                 "model_lengths": np.where(inputs["present"], inputs["lengths"], np.nan),
                 "human_lengths": human.item_lengths, "pool_lengths": human.pool_lengths,
                 "item_bucket": np.array([r.bucket_id for r in suite.items]),
                 "item_language": np.array([r.language for r in suite.items]),
                 "pool_bucket": np.array([r.bucket_id for r in suite.pool]),
                 "pool_language": np.array([r.language for r in suite.pool])}
    with model_timings("figures"):
        images = run_figures(result, plot_data) if figures else {}
    result["metadata"]["timings_s"] = {
        "human_side": {k: round(v, 3) for k, v in human_timings.items()} or "cached",
        "model_side": {k: round(v, 3) for k, v in model_timings.items()}}
    result["metadata"]["wall_time_s"] = round(time.time() - started, 3)
    with atomic_path(out_dir / "plot_data.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **plot_data)
    write_json(out_dir / "metrics.json", result)
    write_text(out_dir / "report.md", report.render_markdown(result))
    samples = browser.render_section(browser.browser_data(
        suite.items, {result["metadata"]["name"]: browser.answers_of(preds.texts, preds.finish)},
        context_key=suite.context_key))
    write_text(out_dir / "report.html", report.render_html(result, images, samples=samples))
    write_json(out_dir / "manifest.json", make_manifest(
        stage="eval", config={"featurizer": human.featurizer_spec, "seed": seed, "sample": preds.sample,
                              "allow_missing": allow_missing},
        inputs={"predictions": preds.sha256, "suite_version": suite.version}, seed=seed, started=started,
        extra={"suite_version": suite.version}))
    return result


def _by_bucket(values: np.ndarray, buckets: np.ndarray) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for b in np.unique(buckets):
        v = values[buckets == b]
        out[str(b)] = v[np.isfinite(v)]
    return out


def run_figures(result: dict[str, Any], plot_data: dict[str, np.ndarray]) -> dict[str, str | None]:
    """All figures of a single-run report, as base64 PNGs keyed by section prefix."""
    metrics, buckets = result["metrics"], sorted(result["buckets"])
    figures: dict[str, str | None] = {}
    for family in plots.family_order():
        figures[f"heatmap_{family}"] = plots.family_heatmap(metrics, family, buckets)
    figures["lengths"] = plots.length_histograms(
        buckets, _by_bucket(plot_data["pool_lengths"], plot_data["pool_bucket"]),
        _by_bucket(plot_data["model_lengths"], plot_data["item_bucket"]))
    figures["frontier"] = plots.frontier_plot({result["metadata"]["name"]: frontier_points(metrics)},
                                              {result["metadata"]["name"]: frontier_buckets(metrics)},
                                              result["buckets"])
    present = np.isfinite(plot_data["model_xy"][:, 0])
    figures["projection"] = plots.projection_plot(
        plot_data["pool_xy"], plot_data["human_xy"], {result["metadata"]["name"]: plot_data["model_xy"][present]},
        languages={result["metadata"]["name"]: plot_data["item_language"][present]},
        pool_languages=plot_data["pool_language"], human_languages=plot_data["item_language"])
    return figures


def frontier_points(metrics: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Bucket → (f1, naturalness) for buckets that have both."""
    f1 = metrics.get("f1", {}).get("model", {}).get("per_bucket", {})
    nat = metrics.get("naturalness", {}).get("model", {}).get("per_bucket", {})
    return {b: (f1[b], nat[b]) for b in f1 if b in nat}


def frontier_buckets(metrics: dict[str, Any]) -> list[str]:
    """The buckets on the Pareto frontier (utility ascending)."""
    return list(metrics.get("hypervolume", {}).get("model", {}).get("frontier", []))


def length_reach(lengths: np.ndarray, present: np.ndarray, finish: Sequence[str | None],
                 suite: Suite) -> dict[str, Any]:
    """Whether decoding let the method reach every length bin: the share of its responses cut at max_new_tokens,
    the longest cut response (the most the token budget produced) and the bins that start above it, with the
    human pool's share of responses in them."""
    present = np.asarray(present, dtype=bool)
    known = [i for i in range(len(finish)) if present[i] and finish[i] is not None]
    pool_lengths = np.array([r.length or 0 for r in suite.pool], dtype=float)
    edges, labels = list(suite.length_edges), list(suite.length_labels)
    if not known:
        return {"known": False, "note": "the predictions carry no finish reason (generated elsewhere)"}
    cut = [i for i in known if finish[i] == "length"]
    out: dict[str, Any] = {"known": True, "n": len(known), "truncated": len(cut),
                           "truncated_share": len(cut) / len(known), "longest_cut": None, "out_of_reach": []}
    if cut:
        longest = float(np.max(lengths[cut]))
        out["longest_cut"] = longest
        pool_bins = conditional.bin_index(pool_lengths, edges)
        for k, (label, low) in enumerate(zip(labels[1:], edges), start=1):
            if low > longest:
                out["out_of_reach"].append({"bin": label, "from": low,
                                            "human_share": float(np.mean(pool_bins == k))})
    return out
