"""Swarms on Redis: streams with consumer groups, fenced leader election, snapshots and
recovery from crashed coordinators and a crashed Redis (see ``workload.py``)."""
