"""imgcls: train, evaluate, save and serve Keras image classifiers.

The pipeline, one module a stage: `imgcls.data` (datasets), `imgcls.models` (presets),
`imgcls.config` (recipes), `imgcls.augment` and `imgcls.train` (training into run folders,
`imgcls.runs`), `imgcls.evaluate` and `imgcls.reports` (metrics and plots), `imgcls.saving`
(model files), `imgcls.images` and `imgcls.predict` (pictures to classes), `imgcls.serve` (the
HTTP service). The CLI in `imgcls.cli` is a thin layer over them; `imgcls.bench` measures them.
"""

__version__ = "0.1.0"
