"""The engine: a config flows one way through five stages, one module each.

* :mod:`~hydra_init.engine.parse`: any config form -> one immutable
  :class:`~hydra_init.engine.parse.ParsedConfig` (validated once; every later
  stage takes it as it is), with :mod:`~hydra_init.engine.knobs` (preset knobs)
  and :mod:`~hydra_init.engine.expressions` (``expr`` arithmetic);
* :mod:`~hydra_init.engine.select`: which modules and parameters a rule selects
  (class names over the MRO, path globs, parameter globs);
* :mod:`~hydra_init.engine.plan`: one entry per parameter, every check that can
  fail, nothing written;
* :mod:`~hydra_init.engine.execute`: write the plan (each tensor once), with
  :mod:`~hydra_init.engine.sharding` for DTensor shards;
* :mod:`~hydra_init.engine.report`: what every parameter received, from the plan.
"""
