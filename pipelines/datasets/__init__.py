"""Datasets larger than memory: the sharded format, its importers and the one image interface the loops read.

``shards`` is the on-disk format (Parquet shards and a manifest on any pyarrow URI), ``codec`` turns
images into stored bytes and back, ``imports`` fills a destination from a source (`relay data
import`; ``sources`` are what it reads, ``copies`` copies a sharded dataset, ``info`` is `relay data
info`), ``checks`` checks a dataset against its manifest (cheaply before a run, by digest in the
split stage), ``catalog`` makes a sharded dataset a Relay dataset (`data.name: parquet`: its labels
and classes, without torch), ``rows`` reads the images of given sample ids (what a loader worker
runs), and ``image_source`` is what training, labeling and evaluation read images through
(docs/DATA.md).
"""
