-- Mixes the service's endpoints: mostly order pages across many customers, some quotes.
local counter = 0
request = function()
  counter = counter + 1
  if counter % 5 == 0 then
    local body = '{"items":[{"sku":"SKU-00042","quantity":2},{"sku":"SKU-00' .. (100 + counter % 400) .. '","quantity":1}]}'
    return wrk.format("POST", "/quote", { ["Content-Type"] = "application/json" }, body)
  end
  return wrk.format("GET", "/orders/" .. (counter * 7919 % 20000) .. "?page=" .. (counter % 3))
end
