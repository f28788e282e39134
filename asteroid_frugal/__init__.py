"""asteroid-frugal: the original TasNet for music and the data recipes of
"A frugal approach to music source separation", on Asteroid."""
from .model import FrugalTasNet, count_parameters
from .registry import register

register()

__all__ = ["FrugalTasNet", "count_parameters"]
__version__ = "0.1.0"
