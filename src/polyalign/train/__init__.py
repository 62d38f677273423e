"""Training: pure-torch math (samplers, bucket-normalized losses, the HDPO loss), TRL config and trainer
subclasses, and one run scaffold shared by every training stage.

Modules (import them directly; this package imports nothing heavy):
- `sampler`           bucket-temperature sampler, p(bucket) ∝ n_b^(1/T)
- `sft_loss`          bucket-normalized SFT loss with a global normalizer, DRO weight update
- `hdpo_loss`         the HDPO loss (settings as plain numbers), REINFORCE term
- `global_batch`      GlobalBatchStatsMixin: statistics of a whole optimizer step (all micro-batches and ranks)
- `columns`           extra per-example columns through TRL's collators into compute_loss
- `padding_free`      padding-free SFT batches: the packed-attention check, TRL's truncation rule
- `varlen_attention`  attn_implementation="sdpa_varlen": packed rows example by example
- `bucket_log`        per-bucket loss accumulation, summaries and bucket_losses.jsonl
- `examples`          records → TRL prompt-completion examples fitted to a token budget
- `options`           trainer options declared once on a TRL config; the YAML sections built from them
- `bucket_sft_config` BucketSFTConfig (trl.SFTConfig + the balance options)
- `bucket_trainer`    BucketSFTTrainer (trl.SFTTrainer subclass)
- `hdpo_config`       HDPOConfig (trl.DPOConfig + the loss and on-policy options), is_plain_dpo
- `hdpo_trainer`      HDPOTrainer (trl.DPOTrainer subclass)
- `run`               run_training: work folder, resume, process guard, LoRA, atomic save, manifest
- `sft`               SFTRunConfig, run_sft(config) -> Path (the `polyalign train sft` stage)
- `hdpo`              HDPORunConfig, run_hdpo(config) -> Path (the `polyalign train dpo` / `hdpo` stages)
"""
