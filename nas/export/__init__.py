"""``nas export``: a trial's network as a standalone bundle (``model.py``, weights, torch.export, ONNX), checked for
parity before it is handed over. Reads the storage through ``nas.study``; never imports ``nas.execution``/``nas.cli``."""
