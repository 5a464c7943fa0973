"""The fan-out core: plain classes with no I/O, fed events and returning decisions.

``filters`` (subscription filters and their canonical form), ``selection`` (one batch seen
through every group's filter), ``fanout`` (groups, members, seq bookkeeping, frames to
send), ``protocol`` (client frames parsed, server frames built), ``trust`` (what a stored
event must look like). Nothing here opens a socket, reads a clock it was not given, or
imports the gateway, the store or a network library (tests/test_layers.py checks it).
"""
