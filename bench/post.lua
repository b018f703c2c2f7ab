-- wrk script: POST $BODY (JSON) to the URL, with "Authorization: Bearer $TOKEN" when TOKEN is set.
wrk.method = "POST"
wrk.body = os.getenv("BODY") or '{"host":"127.0.0.1","reason":"idle"}'
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
