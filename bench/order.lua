-- wrk script: POST /api/v1/orders with "pay": true, one unit of a random product
-- (1..PRODUCTS, or only product 1 when HOT=1) for a random user (1..USERS).
local users = tonumber(os.getenv("USERS") or "2000")
local products = tonumber(os.getenv("PRODUCTS") or "1000")
local hot = os.getenv("HOT") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local u = math.random(1, users)
  local p = hot and 1 or math.random(1, products)
  return wrk.format(nil, "/api/v1/orders", nil,
    '{"userId":' .. u .. ',"items":[{"productId":' .. p .. ',"quantity":1}],"pay":true}')
end
