"""The router's lab: everything that runs offline, never at request time.

Importers of public outcome sets, outcome collection and grading, training
(estimator selection and calibration), held-out evaluation against baselines,
cost-weight calibration, reports, and the `ttc router` / `python -m router`
command line (`router.lab.cli.make_app`). The lab imports serving modules
(`router.api`, `router.features`, `router.predictors`, ...); serving never
imports the lab, and neither imports the gateway (tests/router/test_layers.py).
"""
