-- wrk script: plain GETs (the URL carries the query); used by bench/wsgi.py and bench/rates_get.py.
wrk.method = "GET"
