"""Which form of the HDPO distribution regularizer should be the default: expected distance or offset?

Trains, from one SFT model, with the same pairs, steps and seed:
  dpo            plain sigmoid DPO (the control: no regularizer, no anchor, uniform weights)
  hdpo_noreg     HDPO with weights + anchor but lambda = 0 (what the regularizer adds on top of the rest)
  hdpo_expected  + lambda * E_p[d],  p = sigmoid(tau * m)       (reg_form: expected)
  hdpo_offset    + lambda * (d- - d+) inside the log-sigmoid     (reg_form: offset, ODPO sign)
and compares, on held-out data:
  * reward accuracy and margin on held-out pairs (pairs built from the val split);
  * greedy samples on held-out prompts: mean learned-critic distance, and the closed-form band and Mahalanobis
    distances to their buckets' human support (with the held-out humans' own values as the ceiling);
  * how much each term moves the gradient: on 4 batches of training pairs, ||g_reg|| / ||g|| (g_reg = gradient
    with the regularizer minus without it), its cosine with the DPO gradient, and ||g_anchor|| / ||g||, at the
    SFT init and after training.

    .venv/bin/python benchmarks/hdpo_forms.py --sft DIR --pairs FILE --eval-pairs FILE --critic DIR \
        --data DIR --prompts RECORDS.jsonl --out DIR [--steps 60] [--reg-lambda 0.5] [--seeds 0,1,2]

Every run is cached in --out (a rerun skips finished runs). Prints a markdown table and writes results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ("dpo", "hdpo_noreg", "hdpo_expected", "hdpo_offset")


def run_name(method: str, seed: int) -> str:
    return method if seed == 0 else f"{method}-s{seed}"


def run_config(args: argparse.Namespace, method: str, seed: int) -> Any:
    from polyalign.train.hdpo import HDPORunConfig, as_plain_dpo

    loss = {"beta": args.beta, "reg_lambda": args.reg_lambda, "reg_form": "expected", "tau": args.tau,
            "anchor_gamma": args.anchor, "use_weights": True}
    if method == "hdpo_noreg":
        loss["reg_lambda"] = 0.0
    if method == "hdpo_offset":
        loss["reg_form"] = "offset"
    config = HDPORunConfig(
        model=args.sft, pairs=args.pairs, eval_pairs=args.eval_pairs,
        output_dir=str(Path(args.out) / run_name(method, seed)), seed=seed, max_length=args.max_length, max_train_pairs=args.max_train_pairs, max_eval_pairs=None,
        loss=loss, training={"max_steps": args.steps, "per_device_train_batch_size": args.batch,
                             "learning_rate": args.lr, "lr_scheduler_type": "cosine", "warmup_steps": 0.05,
                             "logging_steps": 10, "per_device_eval_batch_size": 32,
                             "dataloader_pin_memory": False})
    return as_plain_dpo(config)[0] if method == "dpo" else config


def loss_settings(args: argparse.Namespace, form: str, reg_lambda: float, anchor: float, weights: bool) -> Any:
    return {"beta": args.beta, "reg_lambda": reg_lambda, "reg_form": form, "tau": args.tau, "anchor_gamma": anchor,
            "use_weights": weights}  # HDPOConfig options


def gradient_shares(args: argparse.Namespace, policy_dir: str, form: str, n_batches: int = 4) -> dict[str, float]:
    """Norm shares of the regularizer's and the anchor's gradients in the full HDPO gradient (policy_dir against
    the SFT reference), summed over `n_batches` training batches."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from polyalign.models.loading import load_tokenizer
    from polyalign.pairs import load_pairs
    from polyalign.data.stratify import random_subset
    from polyalign.train.hdpo import build_pair_examples
    from polyalign.train.hdpo_config import HDPOConfig
    from polyalign.train.hdpo_trainer import HDPOTrainer

    rows = random_subset(load_pairs(args.pairs)[0], n_batches * args.batch, args.seed + 7)
    tokenizer = load_tokenizer(args.sft, padding_side="right")
    buckets, languages = sorted({r["bucket_id"] for r in rows}), sorted({r["language"] for r in rows})
    examples, _ = build_pair_examples(rows, tokenizer, {b: i for i, b in enumerate(buckets)},
                                      {x: i for i, x in enumerate(languages)}, max_length=args.max_length)
    cfg = HDPOConfig(output_dir=str(Path(args.out) / "grad-work"), bf16=False, report_to="none", beta=args.beta,
                    max_length=args.max_length, per_device_train_batch_size=args.batch, precompute_ref_log_probs=False,
                    train_sampling_strategy="sequential", disable_tqdm=True, dataloader_pin_memory=False)
    trainer = HDPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy_dir),
                          ref_model=AutoModelForCausalLM.from_pretrained(args.sft), args=cfg,
                          train_dataset=Dataset.from_list(examples), processing_class=tokenizer,
                          bucket_names=buckets, language_names=languages)
    trainer.model.train()
    variants = {"full": loss_settings(args, form, args.reg_lambda, args.anchor, True),
                "noreg": loss_settings(args, form, 0.0, args.anchor, True),
                "dpo": loss_settings(args, form, 0.0, 0.0, True)}
    grads = {}
    batches = list(trainer.get_train_dataloader())[:n_batches]
    for name, settings in variants.items():
        for key, value in settings.items():  # the trainer reads its options from its HDPOConfig
            setattr(trainer.args, key, value)
        trainer.model.zero_grad()
        trainer.step_stats = trainer.step_statistics(batches)  # the 4 batches form one step
        for batch in batches:
            trainer.compute_loss(trainer.model, dict(batch)).backward()
        grads[name] = torch.cat([p.grad.reshape(-1).clone() for p in trainer.model.parameters()
                                 if p.grad is not None])
    g, g_reg, g_anchor = grads["full"], grads["full"] - grads["noreg"], grads["noreg"] - grads["dpo"]
    cos = float(torch.nn.functional.cosine_similarity(g_reg, grads["dpo"], dim=0)) if g_reg.norm() > 0 else 0.0
    return {"grad_norm": float(g.norm()), "reg_share": float(g_reg.norm() / g.norm()),
            "anchor_share": float(g_anchor.norm() / g.norm()), "reg_cos_dpo": cos}


def greedy_distances(args: argparse.Namespace, model_dir: str, name: str, records: list[Any], critic: Any,
                     support: Any) -> dict[str, float]:
    """Greedy samples of the model on the held-out prompts: critic and closed-form distances."""
    from polyalign.generate import DecodingConfig, generate_predictions
    from polyalign.io import read_jsonl

    out = Path(args.out) / f"greedy-{Path(args.prompts).stem}" / name
    path = generate_predictions(model_dir, records, out, DecodingConfig(
        do_sample=False, max_new_tokens=args.max_new_tokens, batch_size=32, seed=args.seed), device="cpu")
    preds = {row["id"]: row["prediction"] for row in read_jsonl(path)}
    return distances([preds[r.id] for r in records], records, critic, support)


def aggregate(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean over seeds of every number (and its sd under `sd`), keeping the per-seed rows."""
    def mean_sd(values: list[float]) -> tuple[float, float]:
        return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    row: dict[str, Any] = {"seeds": per_seed, "sd": {}, "greedy": {}}
    for key in ("heldout_reward_accuracy", "heldout_macro_bucket_accuracy", "heldout_margin", "train_s"):
        row[key], row["sd"][key] = mean_sd([r[key] for r in per_seed])
    for key in per_seed[0]["greedy"]:
        row["greedy"][key], row["sd"][f"greedy/{key}"] = mean_sd([r["greedy"][key] for r in per_seed])
    return row


def pair_margin(summary: dict[str, Any]) -> float:
    """Mean reward margin over all held-out pairs, from the per-bucket summary."""
    buckets = summary["buckets"].values()
    return sum(b["margin"] * b["pairs"] for b in buckets) / sum(b["pairs"] for b in buckets)


def distances(texts: list[str], records: list[Any], critic: Any, support: Any) -> dict[str, float]:
    from polyalign.critic.featurize import linguistic_features

    langs = [r.language for r in records]
    buckets = [r.bucket_id for r in records]
    d = critic.score(texts, langs, buckets, unknown="pooled")
    x = np.asarray(linguistic_features(texts, langs), dtype=np.float64)
    band, maha = support.band(x, buckets), support.mahalanobis(x, buckets)
    out = {"critic_mean": float(np.mean(d)), "critic_median": float(np.median(d)),
           "band_mean": float(np.mean(band)), "band_median": float(np.median(band)),
           "mahalanobis_mean": float(np.mean(maha)), "mahalanobis_median": float(np.median(maha))}
    for lang in sorted(set(langs)):
        idx = [i for i, x_ in enumerate(langs) if x_ == lang]
        out[f"critic_mean_{lang}"] = float(np.mean(d[idx]))
    nonempty = np.array([bool(t.strip()) for t in texts])
    out.update({"empty": int((~nonempty).sum()), "mean_chars": float(np.mean([len(t) for t in texts])),
                "critic_mean_nonempty": float(np.mean(d[nonempty])) if nonempty.any() else None,
                "mahalanobis_median_nonempty": float(np.median(maha[nonempty])) if nonempty.any() else None})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sft", required=True, help="SFT model folder (policy init and reference)")
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--eval-pairs", required=True)
    parser.add_argument("--critic", required=True)
    parser.add_argument("--data", required=True, help="data build (references.json for closed-form distances)")
    parser.add_argument("--prompts", required=True, help="held-out records (JSONL of Records) for greedy samples")
    parser.add_argument("--out", required=True)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--tau", type=float, default=2.0)
    parser.add_argument("--reg-lambda", type=float, default=0.5)
    parser.add_argument("--anchor", type=float, default=0.05)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--max-train-pairs", type=int, default=None)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0, help="seed of generation and the gradient batches")
    parser.add_argument("--seeds", default="0", help="comma list of training seeds (mean ± sd over them)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from polyalign.progress import quiet_libraries
    from polyalign.critic.distance import SupportDistance, bucket_stats_from_references
    from polyalign.critic.model import load_critic
    from polyalign.data.references import References
    from polyalign.generate import load_records_arg
    from polyalign.io import read_json, write_json
    from polyalign.pairs import load_pairs
    from polyalign.train.hdpo import run_hdpo

    quiet_libraries()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    critic = load_critic(args.critic)
    support = SupportDistance(bucket_stats_from_references(References.load(Path(args.data) / "references.json")))
    records, _ = load_records_arg(args.prompts)
    by_language = {k: round(v["auc"], 4) for k, v in (critic.metrics.get("auc_by_language") or {}).items()
                   if v.get("auc") is not None}
    print(f"critic held-out AUC (human vs SFT-model responses): {critic.metrics.get('heldout_auc'):.4f}  "
          f"by language: {json.dumps(by_language)}")
    pairs = load_pairs(args.pairs)[0]
    gaps = np.array([r["d_rejected"] - r["d_chosen"] for r in pairs])
    print(f"{len(pairs)} training pairs; d- - d+: mean {gaps.mean():.3f}, median {np.median(gaps):.3f}, "
          f"share > 0 {np.mean(gaps > 0):.3f}; {len(records)} held-out prompts")

    results: dict[str, Any] = {"args": vars(args), "critic_auc": critic.metrics.get("heldout_auc"),
                               "critic_auc_by_language": critic.metrics.get("auc_by_language"), "runs": {}}
    previous = read_json(out / "results.json") if (out / "results.json").exists() else {}
    same = {k: v for k, v in previous.get("args", {}).items() if k not in ("prompts", "seeds", "methods")} == \
        {k: v for k, v in vars(args).items() if k not in ("prompts", "seeds", "methods")}

    def grad(name: str, key: str, compute: Any) -> dict[str, float]:
        """Gradient shares (cached from a previous run of this script with the same training arguments)."""
        cached = previous.get("runs", {}).get(name, {}).get(key) if same else None
        return cached or compute()

    results["human"] = distances([r.response for r in records], records, critic, support)
    results["runs"]["sft"] = {"greedy": greedy_distances(args, args.sft, "sft", records, critic, support)}
    for form in ("expected", "offset"):
        results["runs"]["sft"][f"grad_{form}"] = grad("sft", f"grad_{form}",
                                                      lambda f=form: gradient_shares(args, args.sft, f))
    seeds = [int(x) for x in args.seeds.split(",")]
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        per_seed = []
        for seed in seeds:
            config = run_config(args, method, seed)
            model_dir = Path(config.output_dir)
            if not (model_dir / "manifest.json").exists():
                started = time.time()
                run_hdpo(config)
                print(f"{run_name(method, seed)}: trained in {time.time() - started:.0f} s")
            manifest = read_json(model_dir / "manifest.json")
            summary = manifest["final_eval"]["summary"]
            per_seed.append({"seed": seed, "train_s": manifest["train_runtime_s"],
                             "train_loss": manifest["train_loss"],
                             "heldout_reward_accuracy": summary["pair_accuracy"],
                             "heldout_macro_bucket_accuracy": summary["macro_accuracy"],
                             "heldout_margin": pair_margin(summary),
                             "greedy": greedy_distances(args, str(model_dir), run_name(method, seed), records,
                                                        critic, support)})
        row = aggregate(per_seed)
        if method.startswith("hdpo_") and method != "hdpo_noreg":
            row["grad"] = grad(method, "grad", lambda m=method: gradient_shares(
                args, str(Path(args.out) / run_name(m, seeds[0])), m.split("_")[1]))
        results["runs"][method] = row
        write_json(out / "results.json", results)
    write_json(out / "results.json", results)
    print_table(results)


def print_table(results: dict[str, Any]) -> None:
    """The comparison as a markdown table (closed-form distances as medians: their means are dominated by a
    few texts far outside the support)."""
    def fmt(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    lines = ["| run | held-out reward acc | macro bucket acc | margin | critic d mean (median) | en | zh | "
             "band median | Mahalanobis median (non-empty) | empty | chars | reg share of ‖g‖ (init → end) | cos(g_reg, g_dpo) end |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    sft = results["runs"]["sft"]
    for name, row in results["runs"].items():
        g = row["greedy"]
        share = cos = "-"
        if "grad" in row:
            form = name.split("_")[1]
            share = f"{sft[f'grad_{form}']['reg_share']:.3f} → {row['grad']['reg_share']:.3f}"
            cos = fmt(row["grad"]["reg_cos_dpo"])
        sd = row.get("sd", {})

        def pm(key: str, value: Any, digits: int = 3) -> str:
            return fmt(value, digits) + (f" ± {sd[key]:.{digits}f}" if sd.get(key) else "")
        lines.append(f"| {name} | {pm('heldout_reward_accuracy', row.get('heldout_reward_accuracy'))} | "
                     f"{pm('heldout_macro_bucket_accuracy', row.get('heldout_macro_bucket_accuracy'))} | "
                     f"{pm('heldout_margin', row.get('heldout_margin'))} | "
                     f"{pm('greedy/critic_mean', g['critic_mean'])} ({g['critic_median']:.3f}) | "
                     f"{fmt(g.get('critic_mean_en'))} | "
                     f"{fmt(g.get('critic_mean_zh'))} | {fmt(g.get('band_median'), 4)} | "
                     f"{fmt(g.get('mahalanobis_median'), 1)} ({fmt(g.get('mahalanobis_median_nonempty'), 1)}) | "
                     f"{fmt(g['empty'], 1)} | {fmt(g.get('mean_chars'), 0)} | {share} | {cos} |")
    h = results["human"]
    lines.append(f"| human (held-out responses) | - | - | - | {h['critic_mean']:.3f} ({h['critic_median']:.3f}) | "
                 f"{fmt(h.get('critic_mean_en'))} | {fmt(h.get('critic_mean_zh'))} | {fmt(h.get('band_median'), 4)} | "
                 f"{fmt(h.get('mahalanobis_median'), 1)} | {h['empty']} | {fmt(h.get('mean_chars'), 0)} | - | - |")
    print("\n".join(lines))
    for form in ("expected", "offset"):
        g = sft[f"grad_{form}"]
        print(f"at the SFT init, {form}: reg share {g['reg_share']:.3f}, cos(g_reg, g_dpo) {g['reg_cos_dpo']:.3f}, "
              f"anchor share {g['anchor_share']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
