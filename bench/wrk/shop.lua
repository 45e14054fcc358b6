-- Shop load for wrk: one of four request kinds, picked by BENCH_SHOP_KIND.
--   product: GET /api/v1/products/{id} for a random id of BENCH_IDS (a file, one UUID a line)
--   list:    GET /api/v1/products filtered by a random category of BENCH_CATEGORIES, price
--            range, inStock, sorted by price, a random page 1-5
--   search:  GET /api/v1/products?search=<random term>
--   order:   POST /api/v1/orders with 3 distinct random products (quantity 1), a bearer token
--            (BENCH_TOKEN) and a unique Idempotency-Key
local kind = os.getenv("BENCH_SHOP_KIND")
local token = os.getenv("BENCH_TOKEN")
local terms = { "tomato", "basil", "lot 12", "dwarf pep", "coir", "premium", "sensor", "tray #1", "neem", "giant" }
local counter = 0
-- thread_no is a global set by setup() in each thread's own Lua state.
local ids, categories = {}, {}

local function lines(path)
  local out = {}
  if path then
    for line in io.lines(path) do
      if #line > 0 then out[#out + 1] = line end
    end
  end
  return out
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function init(args)
  ids = lines(os.getenv("BENCH_IDS"))
  categories = lines(os.getenv("BENCH_CATEGORIES"))
  math.randomseed(os.time() * 1000 + (thread_no or 0))
end

local function pick(t) return t[math.random(#t)] end

function request()
  counter = counter + 1
  if kind == "product" then
    return wrk.format("GET", "/api/v1/products/" .. pick(ids))
  elseif kind == "list" then
    return wrk.format("GET", "/api/v1/products?categoryId=" .. pick(categories) ..
      "&minPrice=10.00&maxPrice=150.00&inStock=true&orderBy=price&order=asc&limit=20&page=" .. math.random(5))
  elseif kind == "search" then
    return wrk.format("GET", "/api/v1/products?limit=20&search=" .. pick(terms):gsub(" ", "%%20"):gsub("#", "%%23"))
  else
    local a, b, c = pick(ids), pick(ids), pick(ids)
    while b == a do b = pick(ids) end
    while c == a or c == b do c = pick(ids) end
    local body = '{"items":[{"productId":"' .. a .. '","quantity":1},{"productId":"' .. b ..
      '","quantity":1},{"productId":"' .. c .. '","quantity":1}]}'
    local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. token,
      ["Idempotency-Key"] = "bench-" .. thread_no .. "-" .. counter .. "-" .. os.time(),
    }
    return wrk.format("POST", "/api/v1/orders", headers, body)
  end
end
