"""Assay on a Ray cluster (``assay serve --ray``): the same apps and consumer groups, with each reader a Ray Serve
replica. Imported only when Ray is asked for; the single-machine server never imports Ray.

    cluster.py   the ``assay serve --ray`` process: joins or starts Ray, deploys the ingress, drains on a signal
    ingress.py   the ingress deployment: the three HTTP apps on their usual ports, over a RayRegistry
    registry.py  RayRegistry: consumer groups as deployments, readers as replicas, requests through their handles
    replica.py   GroupReplica: one reader (the single-machine queue, batching and reader thread) per replica
"""
