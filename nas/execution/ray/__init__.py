"""The Ray Tune backend: the Tuner driver, and the trainable (``RayWorker``) that runs one study worker per Ray
trial. Needs ``ray`` (the ``ray`` extra); imported only when a study runs with ``backend: ray``. Never imports
``nas.execution.local``."""
