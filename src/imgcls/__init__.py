"""imgcls: train, evaluate, save and serve Keras image classifiers.

The pipeline, one module a stage: `imgcls.data` (datasets), `imgcls.models` (presets),
`imgcls.config` (recipes), `imgcls.train` (run folders), `imgcls.evaluate` and `imgcls.reports`
(metrics and plots), `imgcls.saving` (model files), `imgcls.predict` (image files). The CLI in
`imgcls.cli` is a thin layer over them.
"""

__version__ = "0.1.0"
