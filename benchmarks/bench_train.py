"""Training and generation benchmarks.

Sections (run all by default, or pick with --sections):
  sft       median optimizer-step time of BucketSFTTrainer (bucket-normalized loss + DRO + per-bucket logging)
            over TRL's SFTTrainer, same model, same batches (sequential sampler), >= 20 steps; target ratio <= 1.05
  padding_free  real tokens/s (and tokens per CPU-second) of the same batches padded and padding-free (TRL's
            padding_free collator; attention sdpa with its block-diagonal mask, and sdpa_varlen) for plain SFT (TRL's
            SFTTrainer) and Bucket-SFT (BucketSFTTrainer, normalized loss + DRO), alternating rounds, with each run's
            mean train loss (the same training) and the real-token fraction of the padded batches. Batch variants
            (--pf-batches): `sequential` (the bench's examples in order) and `bucket_sampler` (Bucket-SFT's own
            sampler at --bucket-temperature over --pool examples, as `polyalign train sft` draws them; plain SFT gets
            the same stream). Every run of a variant is checked to have trained on the same batches. Target:
            padding-free Bucket-SFT >= 1.5x the tokens/s of padded
  generate  batched generation tokens/s against one prompt at a time (same prompts, same decoding); target >= 4x
  hdpo      median optimizer-step time of HDPOTrainer (pair weights + expected-distance regularizer + anchor) over
            TRL's DPOTrainer, same model, same batches, reference log-probs precomputed in both, >= 20 steps; target
            ratio <= 1.05; also HDPO without precompute, and critic scoring throughput (responses/s)
  round     the cost of one HDPO round at demo scale on the bundled data: configs/pipeline/rounds.yaml's HDPO in
            2 rounds, run by the pipeline itself (`run_pipeline`, a scratch work folder); the wall seconds of round
            2's stages: sampling round 1's model on the train prompts (samples_hdpo_r2), the cross-fitted critic
            refit (critic_hdpo_r2), the pairs (pairs_hdpo_r2), against its training stage (hdpo), and the same
            for round 1 (samples_bucket_sft, critic, pairs_bucket_sft, hdpo_r1). Base and SFT training are cut to
            --round-prep-steps (0: demo.yaml's own) to reach round 1 sooner; the rounds are demo's unless
            --round-per-bucket / --round-train-steps scale them down (samples per bucket, HDPO steps per round)

Usage:
  python benchmarks/bench_train.py                       # tiny model, synthetic or bundled data, CPU
  python benchmarks/bench_train.py --model runs/tiny-base --data runs/data
  python benchmarks/bench_train.py --preset gpu          # larger model/batches for a GPU
  python benchmarks/bench_train.py --sections padding_free --data runs/data   # bundled data: real length variance
  python benchmarks/bench_train.py --sections round      # one HDPO round of the demo (builds its own data)
  python benchmarks/bench_train.py --sections padding_free --data runs/data --threads 1 \
      --pf-batches bucket_sampler --pf-trainers bucket_sft --pf-attention sdpa_varlen --pool 2000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # records_factory for synthetic data

SECTIONS: dict[str, Callable[[argparse.Namespace, dict[str, Any]], dict[str, Any]]] = {}

PRESETS = {
    "cpu": {"hidden": 128, "layers": 4, "heads": 4, "vocab": 8000, "max_length": 256, "batch": 8, "steps": 30,
            "gen_prompts": 64, "gen_batch": 32, "gen_tokens": 128},
    "gpu": {"hidden": 768, "layers": 12, "heads": 12, "vocab": 8000, "max_length": 512, "batch": 32, "steps": 40,
            "gen_prompts": 256, "gen_batch": 64, "gen_tokens": 128},
}


def section(name: str) -> Callable:
    """Register a benchmark section."""
    def wrap(fn: Callable) -> Callable:
        SECTIONS[name] = fn
        return fn
    return wrap


# ---- shared setup ------------------------------------------------------------------------------------------
def load_setup(args: argparse.Namespace) -> dict[str, Any]:
    """Records (bundled data dir or synthetic) and a model folder (given, or a fresh tiny one)."""
    from polyalign.models.tiny import TinyModelConfig, init_tiny

    if args.data:
        from polyalign.data.build import load_records

        train, val = load_records(args.data, "train"), load_records(args.data, "val")
        source = f"data dir {args.data}"
    else:
        from records_factory import make_records

        train, val = make_records(2000, 0), make_records(300, 1, "val")
        source = "synthetic records (tests/records_factory.py)"
    if args.model:
        model_dir = Path(args.model)
    else:
        model_dir = Path(args.workdir) / "bench-model"
        if not (model_dir / "config.json").exists():
            init_tiny(train, model_dir, TinyModelConfig(vocab_size=args.vocab, hidden=args.hidden,
                                                        layers=args.layers, heads=args.heads,
                                                        max_positions=max(1024, args.max_length * 2)))
    return {"train": train, "val": val, "model_dir": model_dir, "data_source": source}


class StepTimer:
    """TrainerCallback timing each optimizer step (on_step_begin → on_step_end)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self._t = 0.0

            def on_step_begin(self, args, state, control, **kw):  # noqa: ANN001
                _sync()
                self._t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                _sync()
                self.times.append(time.perf_counter() - self._t)

        return _Timer()


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def sft_batches(args: argparse.Namespace, setup: dict[str, Any], n: int | None = None) -> tuple[
        Any, list[str], list[dict[str, Any]], Any, Any]:
    """The SFT benchmarks' examples (`n` records, default the steps' batches and two spare):
    (tokenizer, bucket names, examples, Bucket-SFT dataset, TRL dataset)."""
    from datasets import Dataset

    from polyalign.data.stratify import random_subset
    from polyalign.models.loading import load_tokenizer
    from polyalign.train.examples import build_sft_examples, bucket_vocabulary

    tokenizer = load_tokenizer(setup["model_dir"], padding_side="right")
    records = random_subset(setup["train"], n or args.batch * (args.steps + 2), args.seed)
    names = bucket_vocabulary(setup["train"])
    examples, _ = build_sft_examples(records, tokenizer, {b: i for i, b in enumerate(names)},
                                     max_length=args.max_length)
    ours_ds = Dataset.from_list(examples)
    return tokenizer, names, examples, ours_ds, ours_ds.remove_columns(["bucket_id", "bucket_index"])


# ---- SFT step time -------------------------------------------------------------------------------------------
@section("sft")
def bench_sft(args: argparse.Namespace, setup: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from polyalign.train.bucket_sft_config import BucketSFTConfig
    from polyalign.train.bucket_trainer import BucketSFTTrainer

    tokenizer, names, examples, ours_ds, trl_ds = sft_batches(args, setup)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()

    def run(kind: str) -> list[float]:
        model = AutoModelForCausalLM.from_pretrained(setup["model_dir"])
        balance = {} if kind == "trl" else {"bucket_balance": True, "bucket_temperature": None, "dro": True,
                                              "dro_eta": 0.1}  # the former BalanceSettings(normalize=True, dro=True)
        cfg = (SFTConfig if kind == "trl" else BucketSFTConfig)(**balance, output_dir=str(Path(args.workdir) / f"sft-{kind}"), bf16=bf16, gradient_checkpointing=False,
                        save_strategy="no", report_to="none", max_length=args.max_length, learning_rate=1e-4,
                        per_device_train_batch_size=args.batch, max_steps=args.steps, logging_steps=10,
                        disable_tqdm=True, seed=args.seed, train_sampling_strategy="sequential",
                        dataloader_pin_memory=torch.cuda.is_available())
        timer = StepTimer()
        if kind == "trl":
            trainer = SFTTrainer(model=model, args=cfg, train_dataset=trl_ds, processing_class=tokenizer,
                                 callbacks=[timer])
        else:
            trainer = BucketSFTTrainer(model=model, args=cfg, train_dataset=ours_ds, processing_class=tokenizer,
                                       callbacks=[timer], bucket_names=names)
        from polyalign.train.run import quiet_console_logs

        quiet_console_logs(trainer)
        trainer.train()
        return timer.times[args.warmup:]

    rounds: dict[str, list[float]] = {"trl": [], "bucket": []}
    for _ in range(args.rounds):  # alternate to spread machine noise over both
        for kind in ("trl", "bucket"):
            rounds[kind].append(statistics.median(run(kind)))
    trl_med, ours_med = statistics.median(rounds["trl"]), statistics.median(rounds["bucket"])
    tokens = sum(len(tokenizer.apply_chat_template(ex["prompt"] + ex["completion"], tokenize=True,
                                                   return_dict=True)["input_ids"])
                 for ex in examples[:args.batch * args.steps])
    return {"steps_timed": args.steps - args.warmup, "rounds": args.rounds, "batch": args.batch,
            "max_length": args.max_length, "trl_median_step_s": round(trl_med, 4),
            "bucket_median_step_s": round(ours_med, 4), "ratio_bucket_over_trl": round(ours_med / trl_med, 4),
            "per_round_trl": [round(x, 4) for x in rounds["trl"]],
            "per_round_bucket": [round(x, 4) for x in rounds["bucket"]],
            "train_tokens_per_s_bucket": round(tokens / (ours_med * args.steps), 1), "target": "ratio <= 1.05"}


# ---- padded vs padding-free tokens/s ------------------------------------------------------------------------
PF_BATCHES = {"sequential": "the examples in order (sequential sampler)",
              "bucket_sampler": "Bucket-SFT's own sampler (BucketTemperatureSampler) over a pool of examples"}
PF_ATTENTION = {"sdpa": "padding-free sdpa", "sdpa_varlen": "padding-free sdpa_varlen"}


class RecordingCollator:
    """Wrap a collator and keep the example lengths of every batch it builds (the batches a run really saw)."""

    def __init__(self, inner: Callable[[list[dict[str, Any]]], dict[str, Any]]):
        self.inner = inner
        self.lengths: list[list[int]] = []

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        self.lengths.append([len(ex["input_ids"]) for ex in examples])
        return self.inner(examples)

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def pf_datasets(args: argparse.Namespace, setup: dict[str, Any], batches: str) -> dict[str, Any]:
    """The examples of one batch variant: `sequential` (the bench's examples in order) or `bucket_sampler` (a pool
    of --pool examples drawn by Bucket-SFT's sampler at --bucket-temperature, the way `polyalign train sft` draws
    them; plain SFT gets the same stream as an ordered dataset)."""
    from polyalign.train.sampler import BucketTemperatureSampler

    if batches == "sequential":
        tokenizer, names, _, ours_ds, trl_ds = sft_batches(args, setup)
        return {"tokenizer": tokenizer, "names": names, "ours": ours_ds, "trl": trl_ds, "temperature": None}
    tokenizer, names, _, pool, trl_pool = sft_batches(args, setup, n=args.pool)
    order = BucketTemperatureSampler(pool["bucket_index"], args.bucket_temperature, seed=args.seed).indices()
    return {"tokenizer": tokenizer, "names": names, "ours": pool, "temperature": args.bucket_temperature,
            "trl": trl_pool.select(order[:args.batch * (args.steps + 2)].tolist())}


@section("padding_free")
def bench_padding_free(args: argparse.Namespace, setup: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s (real tokens, no padding) of the same batches padded and padding-free, SFT and Bucket-SFT, for
    each batch variant (--pf-batches); wall time and process CPU time, alternating rounds."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from polyalign.train.bucket_sft_config import BucketSFTConfig
    from polyalign.train.bucket_trainer import BucketSFTTrainer
    from polyalign.train.end_of_turn import EndOfTurnLabelsMixin
    from polyalign.train.run import quiet_console_logs

    import polyalign.train.varlen_attention  # noqa: F401  (registers attn_implementation="sdpa_varlen")

    batch_kinds = _choices(args.pf_batches, PF_BATCHES, "--pf-batches")
    attentions = _choices(args.pf_attention, PF_ATTENTION, "--pf-attention")
    kinds = _choices(args.pf_trainers, {"sft": 0, "bucket_sft": 0}, "--pf-trainers")
    data = {b: pf_datasets(args, setup, b) for b in batch_kinds}
    trl_cls = type("TRLSFTTrainer", (EndOfTurnLabelsMixin, SFTTrainer), {})  # our label rule, TRL's trainer
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()

    def run(batches: str, kind: str, padding_free: bool, attention: str) -> dict[str, Any]:
        d = data[batches]
        model = AutoModelForCausalLM.from_pretrained(setup["model_dir"], attn_implementation=attention)
        common = dict(output_dir=str(Path(args.workdir) / f"pf-{batches}-{kind}-{padding_free}-{attention}"),
                      bf16=bf16, gradient_checkpointing=False, save_strategy="no", report_to="none",
                      learning_rate=1e-4, per_device_train_batch_size=args.batch, max_steps=args.steps,
                      logging_steps=1, disable_tqdm=True, seed=args.seed, train_sampling_strategy="sequential",
                      dataloader_pin_memory=torch.cuda.is_available(), padding_free=padding_free)
        interval = StepIntervalTimer()
        if kind == "sft":  # TRL refuses padding_free with max_length (the examples are fitted already): None in both
            trainer = trl_cls(model=model, args=SFTConfig(**common, max_length=None), train_dataset=d["trl"],
                              processing_class=d["tokenizer"], callbacks=[interval])
        else:
            balance = {"bucket_balance": True, "bucket_temperature": d["temperature"], "dro": True, "dro_eta": 0.1}
            trainer = BucketSFTTrainer(model=model, args=BucketSFTConfig(**balance, **common,
                                                                         max_length=args.max_length),
                                       train_dataset=d["ours"], processing_class=d["tokenizer"],
                                       callbacks=[interval], bucket_names=d["names"])
        trainer.data_collator = recorder = RecordingCollator(trainer.data_collator)
        quiet_console_logs(trainer)
        trainer.train()
        lengths = recorder.lengths[:args.steps]  # the data loader may collate one batch ahead
        timed = slice(args.warmup, args.steps)
        tokens = sum(sum(b) for b in lengths[timed])
        padded = sum(len(b) * max(b) for b in lengths[timed])
        seconds, cpu = sum(interval.times[timed]), sum(interval.cpu_times[timed])
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        return {"tokens_per_s": tokens / seconds, "tokens_per_cpu_s": tokens / cpu, "seconds": seconds,
                "cpu_seconds": cpu, "tokens": tokens, "padded_tokens": padded, "lengths": lengths,
                "mean_loss": statistics.fmean(losses), "losses": losses}

    # padded (sdpa); padding-free with sdpa's block-diagonal mask and/or example by example (sdpa_varlen);
    # on a GPU with flash-attn installed, add flash_attention_2 here
    variants = [("padded", False, "sdpa")] + [(PF_ATTENTION[a], True, a) for a in attentions]
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for _ in range(args.rounds):  # alternate to spread machine noise over every variant
        for batches in batch_kinds:
            for kind in kinds:
                for name, padding_free, attention in variants:
                    results.setdefault((batches, kind, name), []).append(
                        run(batches, kind, padding_free, attention))
    labels = {"sft": "SFT (TRL SFTTrainer)", "bucket_sft": "Bucket-SFT (normalized + DRO)"}
    rows, out = [], {}
    for batches in batch_kinds:
        seen = [r["lengths"] for key, runs in results.items() if key[0] == batches for r in runs]
        if any(x != seen[0] for x in seen):  # every run of a batch variant must have trained on the same batches
            raise RuntimeError(f"padding_free bench: the runs of batch variant {batches!r} saw different batches")
        first = results[(batches, kinds[0], "padded")][0]
        fraction = first["tokens"] / first["padded_tokens"]
        out[batches] = {"batches": PF_BATCHES[batches], "real_token_fraction": round(fraction, 4)}
        if batches == "bucket_sampler":
            out[batches].update(pool=args.pool, temperature=args.bucket_temperature)
        for kind in kinds:
            padded = results[(batches, kind, "padded")]
            entry: dict[str, Any] = {"padded_tokens_per_s": _median(padded, "tokens_per_s"),
                                     "padded_tokens_per_cpu_s": _median(padded, "tokens_per_cpu_s"),
                                     "mean_loss_padded": round(padded[0]["mean_loss"], 5)}
            rows.append((batches, fraction, labels[kind], "padded", entry["padded_tokens_per_s"], [1.0],
                         entry["padded_tokens_per_cpu_s"], [1.0], padded[0]["mean_loss"], 0.0))
            for name, _, _ in variants[1:]:
                packed = results[(batches, kind, name)]
                wall = [b["tokens_per_s"] / a["tokens_per_s"] for a, b in zip(padded, packed)]
                cpu = [b["tokens_per_cpu_s"] / a["tokens_per_cpu_s"] for a, b in zip(padded, packed)]
                gap = max(abs(a - b) for a, b in zip(padded[0]["losses"], packed[0]["losses"]))
                entry[name] = {"tokens_per_s": _median(packed, "tokens_per_s"),
                               "tokens_per_cpu_s": _median(packed, "tokens_per_cpu_s"),
                               "ratio_over_padded": round(statistics.median(wall), 3),
                               "per_round_ratio": [round(x, 3) for x in wall],
                               "cpu_ratio_over_padded": round(statistics.median(cpu), 3),
                               "per_round_cpu_ratio": [round(x, 3) for x in cpu],
                               "mean_loss": round(packed[0]["mean_loss"], 5),
                               "max_step_loss_gap": float(f"{gap:.3g}")}
                rows.append((batches, fraction, labels[kind], name, entry[name]["tokens_per_s"], wall,
                             entry[name]["tokens_per_cpu_s"], cpu, packed[0]["mean_loss"], gap))
            out[batches][kind] = entry
    print(f"\npadded vs padding-free, {args.steps - args.warmup} timed steps x batch {args.batch}, max_length "
          f"{args.max_length}, {args.rounds} alternating rounds (ratios: median over rounds [min-max]); torch "
          f"threads {torch.get_num_threads()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'batches':<15} {'real':>5} {'trainer':<30} {'run':<25} {'tokens/s':>9} {'vs padded':>20} "
          f"{'tok/cpu-s':>9} {'vs padded (cpu)':>20} {'mean loss':>9} {'loss gap':>8}")
    for batches, fraction, label, name, tps, wall, tpc, cpu, loss, gap in rows:
        print(f"{batches:<15} {fraction:>5.0%} {label:<30} {name:<25} {tps:>9.1f} {_spread(wall):>20} "
              f"{tpc:>9.1f} {_spread(cpu):>20} {loss:>9.5f} {gap:>8.2g}")
    return {**out, "steps_timed": args.steps - args.warmup, "rounds": args.rounds, "batch": args.batch,
            "max_length": args.max_length, "torch_threads": torch.get_num_threads(),
            "target": "bucket_sft padding-free ratio >= 1.5"}


def _choices(value: str, allowed: dict[str, Any], flag: str) -> list[str]:
    names = [x.strip() for x in value.split(",") if x.strip()]
    unknown = [x for x in names if x not in allowed]
    if unknown or not names:
        raise SystemExit(f"{flag}: unknown or empty {unknown or value!r}; choose from {', '.join(allowed)}")
    return names


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 1)


def _spread(ratios: list[float]) -> str:
    med = statistics.median(ratios)
    return f"{med:.2f}x" if len(ratios) == 1 else f"{med:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]"


# ---- generation throughput -----------------------------------------------------------------------------------
@section("generate")
def bench_generate(args: argparse.Namespace, setup: dict[str, Any]) -> dict[str, Any]:
    from polyalign.generate import DecodingConfig, generate_texts, render_prompts
    from polyalign.models.chat import prompt_messages
    from polyalign.models.loading import load_causal_lm, load_tokenizer
    from polyalign.data.stratify import random_subset

    tokenizer = load_tokenizer(setup["model_dir"])
    model = load_causal_lm(setup["model_dir"])
    records = random_subset(setup["val"], args.gen_prompts, args.seed)
    decoding = DecodingConfig(max_new_tokens=args.gen_tokens, do_sample=True, seed=args.seed,
                              batch_size=args.gen_batch, max_prompt_tokens=args.max_length)
    texts, lengths, _ = render_prompts(tokenizer, [prompt_messages(r) for r in records], args.max_length)
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # as generate_predictions batches them
    texts = [texts[i] for i in order]
    generate_texts(model, tokenizer, texts[:2], decoding)  # warm-up

    def timed(batch_size: int) -> tuple[int, float]:
        tokens, seconds = 0, 0.0
        for start in range(0, len(texts), batch_size):
            _, stats = generate_texts(model, tokenizer, texts[start:start + batch_size], decoding)
            tokens += stats.new_tokens
            seconds += stats.seconds
        return tokens, seconds

    b_tokens, b_seconds = timed(args.gen_batch)
    s_tokens, s_seconds = timed(1)
    batched, single = b_tokens / b_seconds, s_tokens / s_seconds
    return {"prompts": len(texts), "max_new_tokens": args.gen_tokens, "batch_size": args.gen_batch,
            "device": str(model.device), "batched_tokens_per_s": round(batched, 1),
            "one_at_a_time_tokens_per_s": round(single, 1), "speedup": round(batched / single, 2),
            "batched_new_tokens": b_tokens, "single_new_tokens": s_tokens, "target": "speedup >= 4"}



# ---- HDPO step time ------------------------------------------------------------------------------------------
def bench_pair_rows(records: list[Any], n: int, seed: int) -> list[dict[str, Any]]:
    """pairs.jsonl-shaped rows: chosen = a record's human response, rejected = another record's response of the
    same language, distances and weights that vary from pair to pair (as pairs build would give them)."""
    import random

    from polyalign.models.chat import prompt_messages

    rng = random.Random(seed)
    by_language: dict[str, list[Any]] = {}
    for r in records:
        by_language.setdefault(r.language, []).append(r)
    rows = []
    for i, r in enumerate(rng.sample(records, min(n, len(records)))):
        other = rng.choice(by_language[r.language])
        if other.response == r.response:
            continue
        d_c, d_r = rng.uniform(0, 1), rng.uniform(0.3, 4)
        rows.append({"id": f"bench-{i}", "record_id": r.id, "pair_type": "human_over_model",
                     "bucket_id": r.bucket_id, "language": r.language, "prompt": prompt_messages(r),
                     "chosen": r.response, "rejected": other.response, "d_chosen": d_c, "d_rejected": d_r,
                     "weight": min(3.0, max(0.5, 1 + max(0.0, d_r - d_c) * 0.5))})
    return rows


class StepIntervalTimer:
    """TrainerCallback: wall time (`times`) and this process's CPU time (`cpu_times`) between consecutive
    optimizer-step ends (the whole loop: fetching the micro-batches, the step statistics' all-reduce,
    forward/backward, optimizer, logging)."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Timer(TrainerCallback):
            def __init__(self) -> None:
                self.times: list[float] = []
                self.cpu_times: list[float] = []
                self._t: float | None = None
                self._c = 0.0

            def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001
                _sync()
                self._t, self._c = time.perf_counter(), time.process_time()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001
                _sync()
                now, cpu = time.perf_counter(), time.process_time()
                self.times.append(now - self._t)
                self.cpu_times.append(cpu - self._c)
                self._t, self._c = now, cpu

        return _Timer()


def critic_for_bench(args: argparse.Namespace, setup: dict[str, Any]) -> tuple[Any, str]:
    """The critic to time: --critic BUNDLE, or a learned critic fitted here on human vs model-like text."""
    if args.critic:
        from polyalign.critic.model import load_critic

        return load_critic(args.critic, allow_weak=True), f"bundle {args.critic}"
    import random

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_critic import model_like

    from polyalign.critic.distance import bucket_stats_from_matrix, group_rows
    from polyalign.critic.featurize import linguistic_feature_names, linguistic_features
    from polyalign.critic.fit import CriticConfig, assemble_critic_data, fit_critic_data

    records = [r.to_dict() for r in setup["train"][:3000]]
    rng = random.Random(args.seed)
    preds = [{"id": r["id"], "prediction": model_like(r["response"], r["language"], rng)} for r in records]
    human_x = linguistic_features([r["response"] for r in records], [r["language"] for r in records])
    buckets = [r["bucket_id"] for r in records]
    stats = {b: bucket_stats_from_matrix(x) for b, x in group_rows(human_x, buckets).items() if len(x) >= 2}
    data = assemble_critic_data(records, human_x, preds, linguistic_features)
    critic, _ = fit_critic_data(data, stats, CriticConfig(data="unused", out="unused", seed=args.seed,
                                                          baseline=False), linguistic_feature_names())
    return critic, "learned critic fitted on the bench records (human vs model-like text)"


@section("hdpo")
def bench_hdpo(args: argparse.Namespace, setup: dict[str, Any]) -> dict[str, Any]:
    """HDPOTrainer (pair weights + expected-distance regularizer + anchor ON) over TRL's DPOTrainer, same model,
    same batches (sequential sampler), reference log-probs precomputed in both; then HDPO without precompute
    (reference forward every step), and critic scoring throughput."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    os.environ["TQDM_DISABLE"] = "1"  # TRL's reference-precompute progress bar

    from polyalign.models.loading import load_tokenizer
    from polyalign.train.hdpo import build_pair_examples
    from polyalign.train.hdpo_config import HDPOConfig
    from polyalign.train.hdpo_trainer import PAIR_COLUMNS, HDPOTrainer
    from polyalign.train.run import quiet_console_logs

    tokenizer = load_tokenizer(setup["model_dir"], padding_side="right")
    rows = bench_pair_rows(setup["train"], args.batch * (args.steps + 2), args.seed)
    buckets = sorted({r["bucket_id"] for r in rows})
    languages = sorted({r["language"] for r in rows})
    examples, _ = build_pair_examples(rows, tokenizer, {b: i for i, b in enumerate(buckets)},
                                      {lang: i for i, lang in enumerate(languages)}, max_length=args.max_length)
    from datasets import Dataset

    ours_ds = Dataset.from_list(examples)
    trl_ds = ours_ds.remove_columns(list(PAIR_COLUMNS))
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    settings = {"beta": 0.1, "reg_lambda": 0.5, "reg_form": "expected", "anchor_gamma": 0.05, "use_weights": True}

    def run(kind: str, precompute: bool = True) -> tuple[list[float], list[float], float]:
        model = AutoModelForCausalLM.from_pretrained(setup["model_dir"])
        config_cls, options = (DPOConfig, {}) if kind == "trl" else (HDPOConfig, settings)
        cfg = config_cls(**options, output_dir=str(Path(args.workdir) / f"dpo-{kind}"), bf16=bf16, gradient_checkpointing=False,
                        save_strategy="no", report_to="none", max_length=args.max_length, learning_rate=1e-5,
                        per_device_train_batch_size=args.batch, max_steps=args.steps, logging_steps=10,
                        disable_tqdm=True, seed=args.seed, train_sampling_strategy="sequential",
                        precompute_ref_log_probs=precompute, dataloader_pin_memory=torch.cuda.is_available())
        ref = None if precompute else AutoModelForCausalLM.from_pretrained(setup["model_dir"])
        timer, interval = StepTimer(), StepIntervalTimer()
        started = time.perf_counter()
        if kind == "trl":
            trainer = DPOTrainer(model=model, ref_model=ref, args=cfg, train_dataset=trl_ds,
                                 processing_class=tokenizer, callbacks=[timer, interval])
        else:
            trainer = HDPOTrainer(model=model, ref_model=ref, args=cfg, train_dataset=ours_ds,
                                  processing_class=tokenizer, callbacks=[timer, interval], bucket_names=buckets,
                                  language_names=languages)
        setup_s = time.perf_counter() - started  # includes tokenization and the reference precompute
        quiet_console_logs(trainer)
        trainer.train()
        return timer.times[args.warmup:], interval.times[args.warmup:], setup_s

    rounds: dict[str, list[float]] = {"trl": [], "hdpo": [], "trl_interval": [], "hdpo_interval": []}
    setup_times: dict[str, list[float]] = {"trl": [], "hdpo": []}
    for _ in range(args.rounds):  # alternate to spread machine noise over both
        for kind in ("trl", "hdpo"):
            steps, intervals, setup_s = run(kind)
            rounds[kind].append(statistics.median(steps))
            rounds[f"{kind}_interval"].append(statistics.median(intervals))
            setup_times[kind].append(setup_s)
    no_pre_steps, _, no_pre_setup = run("hdpo", precompute=False)
    trl_med, ours_med = statistics.median(rounds["trl"]), statistics.median(rounds["hdpo"])
    trl_int, ours_int = statistics.median(rounds["trl_interval"]), statistics.median(rounds["hdpo_interval"])

    critic, critic_source = critic_for_bench(args, setup)
    texts = [t for r in rows for t in (r["chosen"], r["rejected"])]
    langs = [r["language"] for r in rows for _ in range(2)]
    bids = [r["bucket_id"] for r in rows for _ in range(2)]
    critic.score(texts[:64], langs[:64], bids[:64], unknown="pooled")  # warm-up
    t0 = time.perf_counter()
    critic.score(texts, langs, bids, unknown="pooled")
    critic_s = time.perf_counter() - t0
    return {"steps_timed": args.steps - args.warmup, "rounds": args.rounds, "batch_pairs": args.batch,
            "max_length": args.max_length, "hdpo_terms": "weights + reg(expected, lambda 0.5) + anchor(0.05)",
            "trl_median_step_s": round(trl_med, 4), "hdpo_median_step_s": round(ours_med, 4),
            "ratio_hdpo_over_trl": round(ours_med / trl_med, 4),
            "trl_median_interval_s": round(trl_int, 4), "hdpo_median_interval_s": round(ours_int, 4),
            "ratio_interval_hdpo_over_trl": round(ours_int / trl_int, 4),
            "per_round_trl": [round(x, 4) for x in rounds["trl"]],
            "per_round_hdpo": [round(x, 4) for x in rounds["hdpo"]],
            "setup_s_with_precompute": {k: [round(x, 2) for x in v] for k, v in setup_times.items()},
            "hdpo_no_precompute_median_step_s": round(statistics.median(no_pre_steps), 4),
            "hdpo_no_precompute_setup_s": round(no_pre_setup, 2),
            "critic": critic_source, "critic_responses_scored": len(texts),
            "critic_responses_per_s": round(len(texts) / critic_s, 1), "target": "ratio <= 1.05"}


ROUND_STAGES = {"sampling": ("samples_bucket_sft", "samples_hdpo_r2"), "critic": ("critic", "critic_hdpo_r2"),
                "pairs": ("pairs_bucket_sft", "pairs_hdpo_r2"), "training": ("hdpo_r1", "hdpo")}


@section("round")
def bench_round(args: argparse.Namespace, setup: dict[str, Any]) -> dict[str, Any]:
    """One HDPO round of configs/pipeline/rounds.yaml at demo scale, through the pipeline's own stages: wall seconds
    of round 2's sampling, cross-fitted critic refit and pairs against its training (and round 1's, whose critic
    is the shared one, fit on both SFT policies' samples, not cross-fitted)."""
    from polyalign.io import read_json
    from polyalign.pipeline.run import run_pipeline

    config = Path(args.round_config)
    root = Path(args.workdir) / "round"
    overrides: dict[str, Any] = {"workdir": str(root), "methods": ["hdpo"], "contrasts": [],
                                 "preference": {"hdpo": {"rounds": 2}}}
    if args.round_per_bucket:  # fewer train prompts per bucket (every round's samples)
        overrides["samples"] = {"per_bucket": args.round_per_bucket}
    if args.round_train_steps:  # fewer steps of the rounds' HDPO training, one epoch of pairs as in hdpo.yaml
        overrides["hdpo"] = {"training": {"max_steps": args.round_train_steps},
                             "max_train_pairs": args.round_train_steps * 8}
    if args.round_prep_steps:
        steps = args.round_prep_steps
        overrides.update({"base": {"pretrain": {"max_steps": steps, "save_steps": steps}},
                          "sft": {"training": {"max_steps": steps}}, "bucket_sft": {"training": {"max_steps": steps}}})
    log: list[str] = []
    started = time.perf_counter()
    wiring, results = run_pipeline(config, targets=["hdpo"], overrides=overrides, log=log.append)
    wall = time.perf_counter() - started
    seconds = {r.name: round(r.seconds, 1) for r in results}
    rounds = {}
    for k in (1, 2):
        row = {part: seconds[names[k - 1]] for part, names in ROUND_STAGES.items()}
        overhead = row["sampling"] + row["critic"] + row["pairs"]
        rounds[f"round_{k}"] = {**row, "sampling_critic_pairs_s": round(overhead, 1),
                                "overhead_over_training": round(overhead / row["training"], 3)}
    samples = [json.loads(line) for line in (root / "samples_hdpo_r2" / "predictions.jsonl").open(encoding="utf-8")]
    pairs = read_json(root / "pairs_hdpo_r2" / "summary.json")
    critic = read_json(root / "critic_hdpo_r2" / "metrics.json")
    trained = read_json(root / "hdpo" / "model" / "manifest.json")
    spec = wiring.config.preference["hdpo"]
    return {"config": f"{config.name}, hdpo rounds 2 (replay {spec.replay}, cross_fit {spec.cross_fit})",
            "prep_steps": args.round_prep_steps or "the config's",
            "samples_per_bucket": wiring.config.samples.per_bucket,
            "train_steps": wiring.preference_config("hdpo").training.get("max_steps"),
            "stage_seconds": seconds, **rounds,
            "round_2_samples": len(samples), "round_2_finish": dict(Counter(r.get("finish") for r in samples)),
            "round_2_pairs": pairs.get("n_pairs"), "round_2_critic_auc": critic.get("heldout_auc"),
            "round_2_training_pairs": trained.get("n_train_pairs"),
            "samples_max_new_tokens": wiring.decoding(wiring.config.samples.decoding).max_new_tokens,
            "pipeline_wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--model", help="model folder (default: build a tiny one)")
    parser.add_argument("--data", help="data directory (default: synthetic records)")
    parser.add_argument("--workdir", help="scratch folder (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds per trainer")
    parser.add_argument("--warmup", type=int, default=5, help="steps excluded from the median")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--pf-batches", default="sequential,bucket_sampler",
                        help=f"padding_free section: batch variants ({', '.join(PF_BATCHES)})")
    parser.add_argument("--pf-attention", default="sdpa,sdpa_varlen",
                        help=f"padding_free section: padding-free attentions ({', '.join(PF_ATTENTION)})")
    parser.add_argument("--pf-trainers", default="sft,bucket_sft", help="padding_free section: sft, bucket_sft")
    parser.add_argument("--pool", type=int, default=4000, help="padding_free bucket_sampler: examples the sampler "
                        "draws from (configs/train/bucket_sft.yaml's max_train_samples)")
    parser.add_argument("--bucket-temperature", type=float, default=2.0, help="padding_free bucket_sampler: the "
                        "sampler's temperature (BucketSFTConfig's default)")
    parser.add_argument("--critic", help="critic bundle for the HDPO section's scoring throughput (default: fit "
                                         "a small one on the bench records)")
    parser.add_argument("--round-prep-steps", type=int, default=40, help="round section: pretraining and SFT steps "
                        "before round 1 (0: the config's own; demo.yaml: 400 / 120 / 120)")
    parser.add_argument("--round-config", default=str(REPO / "configs" / "pipeline" / "rounds.yaml"),
                        help="round section: the pipeline config whose `hdpo` method is run in 2 rounds")
    parser.add_argument("--round-per-bucket", type=int, default=0, help="round section: samples.per_bucket "
                        "(0: demo.yaml's 30)")
    parser.add_argument("--round-train-steps", type=int, default=0, help="round section: HDPO steps per round, "
                        "max_train_pairs = steps x 8 (0: hdpo.yaml's 60 / 480)")
    for key, value in PRESETS["cpu"].items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None)
    args = parser.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 20 + args.warmup:
        parser.error("--steps must leave at least 20 timed steps after --warmup")

    import torch

    from polyalign.progress import quiet_libraries

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        args.workdir = args.workdir or tmp
        setup = load_setup(args)
        device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{torch.get_num_threads()} threads"
        header = {"device": device, "preset": args.preset, "model": str(setup["model_dir"]) if args.model else
                  f"tiny (hidden {args.hidden}, {args.layers} layers, vocab {args.vocab})",
                  "data": setup["data_source"], "load_average": os.getloadavg()[0]}
        print(json.dumps(header))
        results: dict[str, Any] = {"header": header}
        for name in [s.strip() for s in args.sections.split(",") if s.strip()]:
            if name not in SECTIONS:
                parser.error(f"unknown section {name!r}")
            started = time.time()
            results[name] = SECTIONS[name](args, setup)
            results[name]["wall_s"] = round(time.time() - started, 1)
            print(json.dumps({name: results[name]}))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
