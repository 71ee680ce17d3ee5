-- wrk script: POST the same small JSON body on every request.
-- If BENCH_AUTHORIZATION is set (e.g. "Basic YmVuY2g6..."), it is sent as the Authorization header.
-- Static method/body/headers let wrk build the request once, so the client stays cheap.
wrk.method = "POST"
wrk.body = '{"text":"hello","repeat":2}'
wrk.headers["Content-Type"] = "application/json"

local auth = os.getenv("BENCH_AUTHORIZATION")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
