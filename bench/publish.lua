-- wrk script for bench/fanout.py: POST the JSON body in BENCH_BODY (a publish) on every request.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"t":0}'
wrk.headers["Content-Type"] = "application/json"
