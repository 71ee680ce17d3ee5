-- wrk script for bench/wsgi.py: plain GETs.
wrk.method = "GET"
