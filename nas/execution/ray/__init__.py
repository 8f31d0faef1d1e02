"""The Ray Tune backend: the Tuner driver, the Searcher adapter, the trainable (``RayTrial``). Needs ``ray``
(the ``ray`` extra); imported only when a study runs with ``backend: ray``. Never imports ``nas.execution.local``."""
