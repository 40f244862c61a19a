-- wrk script: POST /api/v1/orders with "pay": true, one unit of a random product
-- (1..PRODUCTS, or only product 1 when HOT=1) for a random user of the TOKENS file
-- that bench/seed.py wrote ("<userId> <token>" lines), with that user's token.
-- The headers of each user are made once, when the script loads.
local products = tonumber(os.getenv("PRODUCTS") or "1000")
local hot = os.getenv("HOT") == "1"
local path = os.getenv("TOKENS")
if not path or path == "" then
  error("order.lua: set TOKENS to the file that bench/seed.py wrote")
end
local file = assert(io.open(path, "r"))
local users = {}
for line in file:lines() do
  local id, token = line:match("^(%d+) (%S+)$")
  if id then
    users[#users + 1] = {
      prefix = '{"userId":' .. id .. ',"items":[{"productId":',
      headers = {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. token,
      },
    }
  end
end
file:close()
if #users == 0 then
  error("order.lua: no users in " .. path)
end
request = function()
  local u = users[math.random(1, #users)]
  local p = hot and 1 or math.random(1, products)
  return wrk.format("POST", "/api/v1/orders", u.headers,
    u.prefix .. p .. ',"quantity":1}],"pay":true}')
end
