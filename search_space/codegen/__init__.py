"""A genome as standalone PyTorch source (``model.py`` needing only torch), with optional BatchNorm folding.

Imports only ``search_space``: the exporter in ``nas/export/`` writes the files and checks their parity.
"""
from search_space.codegen.folding import Folding, fold_state_dict, folded_elements, plan_folding
from search_space.codegen.library import layer_library_source
from search_space.codegen.names import MERGES, module_names
from search_space.codegen.network import model_source, network_source

__all__ = ["Folding", "MERGES", "fold_state_dict", "folded_elements", "layer_library_source", "model_source",
           "module_names", "network_source", "plan_folding"]
