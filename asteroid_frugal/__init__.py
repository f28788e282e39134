"""asteroid-frugal: the original TasNet for music and the data recipes of
"A frugal approach to music source separation", on Asteroid.

Importing the package registers :class:`FrugalTasNet` with Asteroid (so that
``asteroid.models.BaseModel.from_pretrained`` loads its files) and does nothing else: no
command line is read, no environment variable is set. Commands set the process's threading
policy themselves (``cli/common.py``, ``runtime.configure_process``).
"""
from .model import FrugalTasNet, count_parameters
from .registry import register

register()

__all__ = ["FrugalTasNet", "count_parameters"]
__version__ = "0.1.0"
