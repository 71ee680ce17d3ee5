-- wrk script: a plain GET (the URL carries the query).
wrk.method = "GET"
