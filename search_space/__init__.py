"""Graph genomes of convolutional layer choices: shapes, costs, validation, compilation, the zoo."""
from search_space.compiler import build_model
from search_space.errors import GenomeError
from search_space.genome import Genome, NodeInfo
from search_space.zoo import ZOO, get_zoo

__all__ = ["Genome", "GenomeError", "NodeInfo", "build_model", "ZOO", "get_zoo"]
