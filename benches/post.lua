-- wrk script: POST $BODY (JSON) with "Authorization: Bearer <token>": $TOKEN, or one line after
-- another of the file $TOKENS (distinct tokens: no verification result can be reused).
wrk.method = "POST"
local body = os.getenv("BODY")
if body == nil or body == "" then
  body = '{"host":"127.0.0.1","reason":"idle"}'
end
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
local pool = {}
local file = os.getenv("TOKENS")
if file ~= nil and file ~= "" then
  for line in io.lines(file) do
    pool[#pool + 1] = line
  end
end
local n = 0
if #pool > 0 then
  request = function()
    n = n % #pool + 1
    wrk.headers["Authorization"] = "Bearer " .. pool[n]
    return wrk.format()
  end
end
