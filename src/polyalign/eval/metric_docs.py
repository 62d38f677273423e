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
  prompt falls in the gold's length bin only 42% of the time: 1,483 OASST alternatives of the bundled train
  split, measured 2026-12-01).

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

POWER = """## Measured power

`benchmarks/metric_power.py` scores a ladder of known-bad "methods" made of human text at the demo suite's own
size (30 items per context group, pool of 300 per group; the suite drawn from the VAL split, where settings are
chosen): held-out humans (the ceiling); the gold cut to its first half; its first sentence; humans of another
context group of the same language; humans of the other language; the gold with its characters shuffled; one
fixed template answer per language; and a prompt-blind sampler (each item answered with a random response of its
own bucket from the reference pool). ✓ = separated from the held-out humans (paired bootstrap on the same draws,
badness higher, Holm over the ladder); k/K = groups (of 17) where the two differ beyond 1.96 combined SEs.
Output of `python benchmarks/metric_power.py` (2026-12-01; shared quantization of 50 cells, 200 draws per group;
wall time 302 s on this 2-core machine while an experiment ran):

| metric | held_out | first_half | first_sentence | other_group | other_language | char_shuffled | template | prompt_blind |
|---|---|---|---|---|---|---|---|---|
| c2st_acc →0.5 | 0.497 [0.483, 0.511] | 0.775 [0.760, 0.790] ✓ 15/17 | 0.669 [0.655, 0.683] ✓ 11/17 | 0.783 [0.769, 0.797] ✓ 16/17 | 0.987 [0.983, 0.991] ✓ 17/17 | 0.861 [0.850, 0.873] ✓ 16/17 | 0.978 [0.978, 0.978] ✓ 17/17 | 0.455 [0.440, 0.469] ✓ 6/17 |
| feature_gap ↓ | 0.173 [0.148, 0.198] | 0.342 [0.319, 0.365] ✓ 15/17 | 0.318 [0.254, 0.382] ✓ 11/17 | 0.576 [0.481, 0.672] ✓ 17/17 | 0.586 [0.510, 0.661] ✓ 16/17 | 0.258 [0.229, 0.287] ✓ 12/17 | 0.466 [0.466, 0.466] ✓ 17/17 | 0.145 [0.123, 0.166] ✗ 0/17 |
| coverage_joint ≈H | 0.908 [0.886, 0.929] | 0.707 [0.679, 0.735] ✓ 8/17 | 0.839 [0.810, 0.869] ✓ 2/17 | 0.554 [0.522, 0.586] ✓ 11/17 | 0.046 [0.035, 0.057] ✓ 17/17 | 0.557 [0.519, 0.594] ✓ 14/17 | 0.794 [0.794, 0.794] ✓ 12/17 | 0.945 [0.930, 0.961] ✓ 2/17 |
| c_mauve_shared ↑ | 0.707 [0.680, 0.734] | 0.621 [0.587, 0.655] ✓ 4/17 | 0.555 [0.524, 0.586] ✓ 6/17 | 0.158 [0.143, 0.172] ✓ 17/17 | 0.048 [0.045, 0.050] ✓ 17/17 | 0.533 [0.507, 0.558] ✓ 6/17 | 0.073 [0.073, 0.073] ✓ 17/17 | 0.723 [0.696, 0.749] ✗ 0/17 |
| length_w1_norm ↓ | 0.350 [0.278, 0.422] | 0.914 [0.833, 0.996] ✓ 16/17 | 0.839 [0.682, 0.997] ✓ 11/17 | 2.896 [1.695, 4.097] ✓ 11/17 | 0.905 [0.731, 1.079] ✓ 8/17 | 0.323 [0.254, 0.392] ✗ 0/17 | 1.011 [1.011, 1.011] ✓ 17/17 | 0.315 [0.245, 0.385] ✗ 1/17 |
| length_bin_tv ↓ | 0.069 [0.048, 0.089] | 0.145 [0.127, 0.163] ✓ 5/17 | 0.247 [0.235, 0.258] ✓ 6/17 | 0.307 [0.279, 0.334] ✓ 8/17 | 0.180 [0.156, 0.205] ✓ 7/17 | 0.067 [0.047, 0.088] ✗ 0/17 | 0.294 [0.294, 0.294] ✓ 8/17 | 0.069 [0.050, 0.088] ✗ 0/17 |
| prompt_auc ≈H | 0.798 [0.777, 0.820] | 0.770 [0.748, 0.792] ✓ 0/17 | 0.779 [0.757, 0.801] ✗ 1/17 | 0.507 [0.480, 0.534] ✓ 12/17 | 0.500 [0.473, 0.527] ✓ 14/17 | 0.708 [0.684, 0.732] ✓ 4/17 | 0.500 [0.473, 0.527] ✓ 13/17 | 0.520 [0.494, 0.547] ✓ 13/17 |
| f1 ↑ | 1.000 [1.000, 1.000] | 0.622 [0.611, 0.633] ✓ 17/17 | 0.712 [0.690, 0.734] ✓ 12/17 | 0.046 [0.041, 0.052] ✓ 17/17 | 0.001 [0.000, 0.001] ✓ 17/17 | 0.398 [0.389, 0.407] ✓ 17/17 | 0.076 [0.069, 0.082] ✓ 17/17 | 0.126 [0.117, 0.136] ✓ 17/17 |
| chrf ↑ | 100.000 [100.000, 100.000] | 47.006 [46.424, 47.587] ✓ 17/17 | 66.488 [64.139, 68.837] ✓ 12/17 | 5.948 [5.581, 6.315] ✓ 17/17 | 0.446 [0.280, 0.611] ✓ 17/17 | 21.752 [20.988, 22.516] ✓ 17/17 | 6.573 [6.325, 6.822] ✓ 17/17 | 12.364 [11.750, 12.979] ✓ 17/17 |
| c_mauve (before: k = n/10 per bucket, oracle buckets) ↑ | 0.995 | 0.915 | 0.977 | 0.484 | 0.054 | 0.793 | 0.106 | 0.987 |

Reading it:

* Every bad method is separated from the held-out humans by at least five of the nine headline metrics, and every
  headline metric separates at least five of the seven bad methods, overall. Per group (30 items) the power is
  lower, most of all for the subtle rungs (first half, first sentence): read per-group numbers with their CIs.
* What each metric cannot see is by design: the length metrics do not see character-shuffled text (its length is
  the gold's), and `prompt_auc` does not mind a truncated answer (the first sentence is still about the prompt).
  The prompt-blind sampler answers with reference-pool text, so the marginal metrics rate it as human or "more
  human than human" (`feature_gap` and `c_mauve_shared` rank it above the held-out humans; `c2st_acc` 0.455 and
  `coverage_joint` 0.945 flag it only because its responses are pool members); only `prompt_auc` (0.520 against
  0.798) and utility catch it as what it is. That is why `prompt_auc` is in the headline.
* **What failed before and what changed.** Per-bucket C-MAUVE with k = n/10 cells (3 cells at 30 items) scored
  the first sentence of each human answer 0.977 and its first half 0.915 against 0.995 for the whole answer (last
  row): nearly blind to anything but word salad. It left the headline; `c_mauve_shared` quantizes the embedding
  space once per suite (k-means on the whole pool) and smooths both histograms, and separates every rung but the
  prompt-blind one. The per-group scores also conditioned on the gold's length bin; the headline now groups by
  context (language | track | family) and scores length inside the group (`length_w1_norm`, `length_bin_tv`).
* The number of cells was chosen on a val suite of 50 items per group (840 items): the per-group separations
  summed over the six bad methods a marginal metric should catch were 57 (10 cells), 67 (25) and 69 (50); 50
  was kept.
"""
