"""The `fcbuild` command (pip install .): deploy a folder from a laptop or a CI job through the fcbuild
function. The runtime and the frozen binary never import it."""
