-- wrk script: authenticated Fincart webhooks, each with a unique order (so none is a duplicate).
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
-- args[1]: a tag of this wrk's own (several at once must not send the same ids).
function init(args)
  counter = 0
  prefix = (args[1] or "") .. tostring(os.time()) .. "-" .. tostring(tid)
end
request = function()
  counter = counter + 1
  local body = '{"orderId":"b-' .. prefix .. '-' .. counter .. '","status":"processing","subStatus":"picked up",'
    .. '"statusUpdatedDate":1700000000000,"action":"Order Status Changed","refNumber":"R-' .. prefix .. '-' .. counter .. '"}'
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json", ["Authorization"] = "bench-token" }, body)
end
