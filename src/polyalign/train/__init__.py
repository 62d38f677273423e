"""Training: pure-torch math (samplers, bucket-normalized losses) and thin TRL trainer subclasses.

Modules (import them directly; this package imports nothing heavy):
- `sampler`        bucket-temperature sampler, p(bucket) ∝ n_b^(1/T)
- `sft_loss`       bucket-normalized SFT loss with a global normalizer, DRO weight update
- `global_batch`   GlobalBatchStatsMixin: statistics of a whole optimizer step (all micro-batches and ranks)
- `columns`        extra per-example columns through TRL's collators into compute_loss
- `bucket_log`     per-bucket loss accumulation, summaries and bucket_losses.jsonl
- `examples`       records → TRL prompt-completion examples fitted to a token budget
- `bucket_trainer` BucketSFTTrainer (trl.SFTTrainer subclass)
- `sft`            SFTRunConfig, run_sft(config) -> Path (the `polyalign train sft` stage)
"""
