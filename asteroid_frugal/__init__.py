"""asteroid-frugal: the original TasNet for music and the data recipes of
"A frugal approach to music source separation", on Asteroid."""
# the threading policy must be set before anything loads torch (see runtime.py)
from .runtime import early_setup

early_setup()
from .model import FrugalTasNet, count_parameters  # noqa: E402
from .registry import register  # noqa: E402

register()

__all__ = ["FrugalTasNet", "count_parameters"]
__version__ = "0.1.0"
