-- wrk script: POST /scaler/remove for a new host on every request (reason "expired": always
-- `accepted`, so every request is a store write; with store.min_replicas_acked also a WAIT).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  wrk.body = string.format('{"host":"gw-%d-%d","reason":"expired"}', math.random(1000000000), n)
  return wrk.format()
end
