"""Experiments built on the selection: `sweep` (`hwflow sweep`: the accuracy / energy
trade-off of one run, heterogeneous vs homogeneous points) and `study` (`hwflow study`: the
same over training seeds, with `statistics` saying whether a difference is beyond noise).
"""
