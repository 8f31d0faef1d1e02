"""Graph genomes of convolutional layer choices: the op registry, shapes, costs, validation, compilation, the zoo
and the exporter's source generator. Imports nothing else of ours (torch, networkx only)."""
from search_space.compiler import build_model
from search_space.errors import GenomeError
from search_space.genome import Genome, NodeInfo
from search_space.zoo import ZOO, get_zoo

__all__ = ["Genome", "GenomeError", "NodeInfo", "build_model", "ZOO", "get_zoo"]
