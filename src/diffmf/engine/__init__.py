"""Engine: training (single process or torchrun/DDP), checkpoints and weights, fusion."""
__all__ = ["Fuser", "train", "TrainConfig", "load_config", "export_weights", "load_weights"]


def __getattr__(name: str):
    if name == "Fuser":
        from diffmf.engine import fuse as _f

        return _f.Fuser
    if name == "train":
        from diffmf.engine.trainer import train

        return train
    if name in ("TrainConfig", "load_config"):
        from diffmf.engine import config as _c

        return getattr(_c, name)
    if name in ("export_weights", "load_weights"):
        from diffmf.engine import checkpoint as _k

        return getattr(_k, name)
    raise AttributeError(f"module 'diffmf.engine' has no attribute {name!r}")
