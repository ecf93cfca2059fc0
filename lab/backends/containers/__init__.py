"""The container wing: every node a container, from the node image (`images.py`)."""
