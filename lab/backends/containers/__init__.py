"""The container wing: every node a container, from the node image (`images.py`).

`base.py` holds what the container backends share (the launch/release state machine, labels,
the agent's spec, stop, removal by label); `docker.py` runs the containers on this machine's
engine, wired into the lab's fabric; `swarm.py` spreads them over a cluster's engines
(`cluster.py`: the cluster file and placement; `overlay.py`: networks and removal across hosts;
`remote.py`: a node's attach stream, clocks, files and images through an engine's API;
`simcluster.py`: a simulated cluster on this machine). `engine.py` reaches an engine.
"""
