"""Where sweeps run when they leave the laptop: a real multi-node Ray cluster and an MLflow server.

``python -m ausweep.cluster up-local`` starts one on this machine (a Ray head, worker nodes and an
MLflow tracking server, each a process group of its own) so the cluster path — ``ray job submit``,
a driver that joins through ``RAY_ADDRESS``, trials placed on other nodes, tracking over HTTP — can
be run end to end without a cloud. ``down-local`` stops exactly what ``up-local`` started.
:mod:`ausweep.cluster.local` does the work, :mod:`ausweep.cluster.cli` is the command line.
"""

from ausweep.cluster.local import ClusterError, LocalClusterConfig, down, read_state, status, up

__all__ = ["ClusterError", "LocalClusterConfig", "down", "read_state", "status", "up"]
