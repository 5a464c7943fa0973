"""The thin JS client and the wall page, shipped as package data (served by the gateway).

A regular package (not a namespace one) so that ``importlib.resources.files("client_js")``
works in editable installs and from the wheel alike.
"""
