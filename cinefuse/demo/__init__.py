"""The embedded demo: a procedural film collection and the whole pipeline over it.

``cinefuse.demo.collection`` renders a collection whose latent genres show in exactly one
modality each (pictures, sound or words) and simulated users who rate by all three;
``cinefuse.demo.pipeline`` runs generate -> extract -> fuse --grid -> evaluate -> report.
"""
