"""Prose of docs/metrics.md that is not tied to one metric (rendered by `registry.render_markdown`)."""

PREAMBLE = """\
## The scoring frame

`polyalign suite --data DATA_DIR --out SUITE_DIR` fixes, once, what every method is scored on:

* **context groups** — the key fields known *before* the response exists, `--context-key` (default
  `language|track|family`; a field that does not exist or describes the response — `length`, `length_bin`,
  `bucket_id`, `response`, `alternatives` — is refused before any work);
* **items** — from the TEST split (`--split val` to choose settings), at most `--cap-per-bucket` per context
  group, drawn uniformly inside the group (seeded), so their length mix is the data's own;
* **the human reference pool** — for each group, up to `--ref-pool` responses of the TRAIN split (seeded), with
  their linguistic features. Groups with fewer than `--min-pool` train responses are dropped and listed in the
  suite manifest with the reason;
* a **suite version** (hash of items and pool); predictions are checked against it id by id.

Every naturalness and faithfulness metric is a function `score(X, R)`, where `R` is a group's human reference
pool (train humans) and `X` is either the method's responses to the group's suite items (the **model score**) or
the items' own gold human responses (held-out TEST humans, the same number, for the same contexts: the
**held-out ceiling**).

### Two views

* **Context view (the headline).** Groups = context groups. No model sees the gold response's length bin, so
  length is scored as a distribution inside each group: `length_w1_norm` (W1 against the group's pool, in robust
  units) and `length_bin_tv` (the share of responses per length bin against the pool's shares). This is the view
  whose held-out ceiling a method can reach.
* **Oracle-length view.** Groups = the training buckets (`language|track|family|length bin`), i.e. items grouped
  by their GOLD response's length bin. Shown for reference and labelled as such: a method is rewarded there for
  guessing the gold length, and its held-out ceiling is not attainable (another human answering the same OASST
  prompt falls in the gold's length bin only 41% of the time).

The headline metrics of both views (`polyalign.eval.headline.HEADLINE_METRICS`): `c2st_acc`, `feature_gap`,
`coverage_joint`, `c_mauve_shared`, `length_w1_norm`, `length_bin_tv`, `prompt_auc`, `f1`, `chrf`. Every other
metric below is still computed on the oracle-length buckets ("every metric" tables of the reports).

### Ceilings

* **Held-out humans**: the gold responses scored like a method (no utility: the gold against itself).
* **Same-prompt humans**: on items that have another human reply to the same prompt (OASST alternatives), that
  reply scored like a method — utility included (its agreement with the gold is the attainable utility), next to
  every method and the held-out humans *on the same items*. A suite without such items reports this ceiling as
  absent, never as 0.

### Uncertainty and tests

Every headline number has a 95% confidence interval: value ± 1.96·SE, SE the standard deviation over B = 200
bootstrap draws that resample items within each group. The draws depend only on the suite (its seed), the view
and the group, so every method and every training seed is resampled identically; comparisons difference two
methods' replicates draw by draw (a paired bootstrap). A draw recomputes the distribution metrics from the
resampled responses against the fixed pool and fixed fitted models (quantization, C2ST classifiers: each
response's out-of-fold correctness is resampled), so the CI covers item sampling, not refitting.
`polyalign compare --contrast A:B` (and `contrasts:` in a pipeline config) tests badness(A) − badness(B) —
the distance from the metric's ideal in its own direction, |v − held-out| for ≈H metrics — with a two-sided
p-value from the paired SE, and corrects every table of tests with Holm's method. The multi-seed experiment
(`benchmarks/experiment.py`) adds the between-seed variance: SE² = SE²_items(seed mean) + Var_seeds / S.

A group too small for a metric (fewer than 10 scored responses for the distribution metrics, 5 for
`prompt_auc`, a pool under 20) has no value: it is reported as n/a with the reason and left out of the average,
which says over how many groups it was taken.

Featurizers. The linguistic features are `polyalign.data.features` (bilingual, Chinese by character and jieba
word, no configuration constants; see docs/features.md). MAUVE and the 2-D projection use a text embedding space
shared by every method: by default `char-ngram-svd` — TF-IDF over character n-grams (`char_wb`, 1–3, sublinear
tf, min_df 2, the 32,768 most frequent) followed by a 100-dimensional TruncatedSVD, fit once on the suite's pool
with the evaluation seed (it works for Chinese and English alike and needs no download); optionally
`hidden-states` — the mean-pooled last hidden state of a given Hugging Face model
(`polyalign eval --featurizer hidden-states --featurizer-model PATH`).
The headline `c_mauve_shared` quantizes this space ONCE per suite (k-means on the whole pool, shared by every
group and method) and smooths both histograms (add-½); the older per-bucket `c_mauve` (mauve-text with
`num_buckets = clip(round(min(n_p, n_q)/10), 2, 50)` per bucket, 2 k-means restarts of at most 100 iterations,
single-threaded) is kept in the every-metric tables but left the headline: at suite size it had 3 cells per
bucket and could not tell a half-truncated human answer from a whole one (see "Measured power" below). The
global MAUVE compares all scored responses with a pool sample of the same bucket mix (up to 5 pool responses per
item). `prompt_auc` uses its own char n-gram TF-IDF space, fit on the pool's inputs (context + prompt) and
responses together.

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
