"""The critic: distances of a response to its bucket's human support (closed-form and learned).

Import the pieces from their modules: `distance` (closed-form distances, human baseline), `model` (critics,
`load_critic`), `fit` (`fit_critic`), `score` (scoring JSONL files), `featurize` (critic inputs).
"""
