"""Registers :class:`FrugalTasNet` with ``asteroid.models`` (once, idempotently)."""
from asteroid import models as asteroid_models

from .model import MODEL_NAME, FrugalTasNet


def register() -> None:
    """Make ``asteroid.models.get("FrugalTasNet")`` (and so ``from_pretrained``) find us.

    asteroid's ``register_model`` raises on any second registration of a name, even of
    the same class (a module reloaded, or imported under two paths); we skip when a
    class of the same qualified name is already there and raise on a real clash.
    """
    try:
        existing = asteroid_models.get(MODEL_NAME)
    except ValueError:
        asteroid_models.register_model(FrugalTasNet)
        return
    same = (getattr(existing, "__module__", None), getattr(existing, "__qualname__", None)) == (
        FrugalTasNet.__module__, FrugalTasNet.__qualname__)
    if not same:
        raise ValueError(f"asteroid already has a model named {MODEL_NAME!r} ({existing!r})")
    # Keep the newest definition (after importlib.reload) reachable by name.
    vars(asteroid_models)[existing.__name__] = FrugalTasNet
