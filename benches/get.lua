-- wrk script: GET with "Authorization: Bearer $TOKEN" when TOKEN is set.
local token = os.getenv("TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
