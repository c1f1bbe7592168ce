"""hypercorn's settings in the bench (``hypercorn -c file:hypercorn_config.py``).

hypercorn closes a connection after 1,000 requests by default
(``keep_alive_max_requests``). wrk reconnects, but h2load does not: its
HTTP/2 run would stop counting after 4,000 requests. The cap is lifted so
every server keeps its connections for the whole run, as the others do.
"""

keep_alive_max_requests = 2**31
