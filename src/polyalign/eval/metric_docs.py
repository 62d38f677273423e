"""Prose of docs/metrics.md that is not tied to one metric (rendered by `registry.render_markdown`)."""

PREAMBLE = """\
## The scoring frame

`polyalign suite --data DATA_DIR --out SUITE_DIR` fixes, once, what every method is scored on:

* **items** — from the TEST split, a bucket-stratified sample (bucket = language | track | family | length bin,
  merged bins such as `long+xlong` included) with at most `--cap-per-bucket` items per bucket (seeded);
* **the human reference pool** — for each of those buckets, up to `--ref-pool` responses of the TRAIN split
  (seeded), with their linguistic features. Buckets with fewer than `--min-pool` train responses are dropped and
  listed in the suite manifest with the reason;
* a **suite version** (hash of items and pool); predictions are checked against it id by id.

Every naturalness and faithfulness metric is a function `score(X, R)`, where `R` is the bucket's human reference
pool (train humans) and `X` is either

* the method's responses to the bucket's suite items — the **model score**, or
* the suite items' own gold human responses — held-out TEST humans, the same number, for the same contexts — the
  **human-vs-human ceiling**.

The references are thus split in two (train pool vs held-out test humans), and the ceiling is what a method that
writes exactly like people would score, sampling noise included. It is reported next to every model score; read
the model against it, not against the nominal ideal. Utility compares a prediction with its own item's gold
response and has no ceiling.

Featurizers. The linguistic features are `polyalign.data.features` (bilingual, Chinese by character and jieba
word, no configuration constants; see docs/features.md). MAUVE and the 2-D projection use a text embedding space
shared by every method: by default `char-ngram-svd` — TF-IDF over character n-grams (`char_wb`, 1–3, sublinear
tf, min_df 2, the 32,768 most frequent) followed by a 100-dimensional TruncatedSVD, fit once on the suite's pool
with the evaluation seed (it works for Chinese and English alike and needs no download); optionally
`hidden-states` — the mean-pooled last hidden state of a given Hugging Face model
(`polyalign eval --featurizer hidden-states --featurizer-model PATH`).
MAUVE uses mauve-text on these features with `num_buckets = clip(round(min(n_p, n_q)/10), 2, 50)`, 2 k-means
restarts of at most 100 iterations, single-threaded (faiss k-means is deterministic only then). The global MAUVE
compares all scored responses with a pool sample of the same bucket mix (up to 5 pool responses per item).

The human side (pool embeddings, coupling statistics, every ceiling) is cached in `SUITE_DIR/cache/`, keyed by the
suite version, the featurizer and the seed, so scoring another method recomputes only the method's side.

## Failures of the reference implementation these metrics avoid

* Whitespace tokenization made Chinese F1, ROUGE-L and distinct-n equal to exact match / uniqueness: here Chinese
  is tokenized by character and by jieba word, and full-width punctuation is stripped.
* Its coverage ANDed 177 per-feature bands, so even human text scored ~0: here coverage is a mean per-feature
  inside rate and a Mahalanobis region calibrated on held-out pool halves, both ≈ 0.9 for humans by construction.
* One heavy-tailed or configuration-constant feature (and one outlier bucket) dominated its mean naturalness gap:
  here there are no configuration constants among the features, each feature is scaled by the pool's robust
  scale, features are combined by a 10% trimmed mean and buckets by the median.
* It used an English GPT-2 featurizer for Chinese MAUVE: here the default featurizer is character-based and the
  neural one is any model you choose.
* Its references mixed train, val and test, and methods were scored on different subsets: here the pool is TRAIN
  only and every method is scored on the same versioned items.
"""
