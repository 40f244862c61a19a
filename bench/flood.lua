-- wrk script: an anonymous flood. POST /api/v1/orders with no token and a fresh
-- Idempotency-Key on every request (each answers 401 and must write nothing).
local n = 0
local body = '{"userId":1,"items":[{"productId":1,"quantity":1}],"pay":true}'
request = function()
  n = n + 1
  return wrk.format("POST", "/api/v1/orders", {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "flood-" .. math.random(1, 2147483647) .. "-" .. n,
  }, body)
end
