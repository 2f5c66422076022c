"""cinefuse: content-based movie and video recommendation from pictures, sound and words.

Stages: ``cinefuse.extract`` (PyTorch backbones -> store), ``cinefuse.store`` (HDF5 shards,
manifest, verify, S3), ``cinefuse.fuse`` (JAX/Flax fusion training and evaluation).
"""

__version__ = "0.1.0"
