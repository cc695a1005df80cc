"""A live dashboard of the agent fleet, served with ``websockets``, and its load test.

One port serves the page (``static/``: one HTML, one JS, one CSS file, no build step),
the WebSocket stream and the HTTP polling API (:mod:`.server`). The protocol, the board
and the access rules are pure (:mod:`.protocol`, :mod:`.board`); :mod:`.sources` feeds
the board from the real fleet, from Redis, or from a simulator; :mod:`.loadclient` is
the load generator that runs in processes of its own, and :mod:`.scenarios` composes
the measurements shared by the ``dashboard`` workload and the asv benchmarks.
"""
