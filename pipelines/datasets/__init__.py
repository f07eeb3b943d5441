"""Datasets larger than memory: the sharded format, its importers and the one image interface the loops read.

``shards`` is the on-disk format (Parquet shards and a manifest on any pyarrow URI), ``codec`` turns
images into stored bytes and back, ``imports`` fills a destination from a source (`relay data
import`), and ``image_source`` is what training, labeling and evaluation read images through
(docs/ARCHITECTURE.md, Data larger than memory).
"""
