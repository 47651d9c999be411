"""A ZStack 5.2.1 management node simulator (REST layer, jobs, sessions, inventories) for tests and the sandbox.

Start with ``server.serve_simulator`` (tests, demo) or ``labbot sim zstack`` (standalone); ``app.create_app``
builds the ASGI app; ``hooks`` is the seam to the lab-in-a-box.
"""
