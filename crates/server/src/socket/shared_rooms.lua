-- consultd's rooms on Redis: every change to a room is one call of this
-- script, so the state and the stream entry that announces the change move
-- together (Redis runs a script atomically). Nodes read the stream `P:ev`
-- and deliver each entry to their own sockets, in stream order.
--
-- ARGV[1] the operation, ARGV[2] the key prefix, ARGV[3] the stream's
-- approximate length bound; the operation's own arguments follow.
--
-- Keys (K is `c` for a call's signaling room, `h` for a chat room):
--   P:r:K:<id>:m   hash  "<node>/<sid>" -> user id     (members)
--   P:r:K:<id>:u   hash  user id -> {"role","onlineAt","connections"}
--   P:r:K:<id>:x   the room is closed (the call ended)
--   P:r:K:<id>:e   the chat session ended
--   P:r:c:<id>:s   list  senders, in the order they first sent
--   P:r:c:<id>:b   hash  sender -> bytes kept
--   P:r:c:<id>:l:<user>  list "<to>\n<signal>\n<body>" kept for late joiners
--   P:n:<node>     set   "<K>\n<id>\n<sid>": the node's memberships, for reaping
--   P:nodes        zset  node -> last heartbeat (ms, Redis time)
--   P:c:<user>     hash  node -> the user's open sockets there (presence)
--   P:nu:<node>    set   users with sockets on the node, for reaping
--   P:seen         zset  user -> when last alive (ms, the nodes' clocks)
--   P:ev           stream of what happened

local op, P, maxlen = ARGV[1], ARGV[2], ARGV[3]
local KEEP = 86400 -- seconds a closed or ended marker is kept

local function room(kind, id)
  return P .. ':r:' .. kind .. ':' .. id
end

-- A socket's membership, as the node's set `P:n:<node>` keeps it.
local function membership(kind, id, sid)
  return kind .. '\n' .. id .. '\n' .. sid
end

-- kind, id, sid of a membership.
local function parse_membership(entry)
  local a = string.find(entry, '\n', 1, true)
  local b = string.find(entry, '\n', a + 1, true)
  return string.sub(entry, 1, a - 1), string.sub(entry, a + 1, b - 1), string.sub(entry, b + 1)
end

local function emit(...)
  redis.call('XADD', P .. ':ev', 'MAXLEN', '~', maxlen, '*', ...)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Everyone in the room, for `presence:sync`: {user: {role, onlineAt,
-- connections}} as JSON text.
local function users_json(base)
  local flat = redis.call('HGETALL', base .. ':u')
  if #flat == 0 then
    return '{}'
  end
  local parts = {}
  for i = 1, #flat, 2 do
    parts[#parts + 1] = cjson.encode(flat[i]) .. ':' .. flat[i + 1]
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function leave(kind, id, node, sid)
  local base = room(kind, id)
  local member = node .. '/' .. sid
  local user = redis.call('HGET', base .. ':m', member)
  redis.call('SREM', P .. ':n:' .. node, membership(kind, id, sid))
  if not user then
    return false
  end
  redis.call('HDEL', base .. ':m', member)
  local last = '0'
  local raw = redis.call('HGET', base .. ':u', user)
  if raw then
    local u = cjson.decode(raw)
    if u.connections <= 1 then
      redis.call('HDEL', base .. ':u', user)
      last = '1'
    else
      u.connections = u.connections - 1
      redis.call('HSET', base .. ':u', user, cjson.encode(u))
    end
  end
  emit('t', 'leave', 'k', kind, 'r', id, 'n', node, 's', sid, 'u', user, 'last', last,
    'p', users_json(base))
  return true
end

if op == 'join' then
  -- kind, id, node, sid, user, role, onlineAt, join id
  local kind, id, node, sid, user, role, at, jid =
    ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
  local base = room(kind, id)
  if redis.call('EXISTS', base .. ':x') == 1 then
    return { 'closed' }
  end
  local member = node .. '/' .. sid
  local change
  if redis.call('HEXISTS', base .. ':m', member) == 1 then
    change = 'again'
  else
    redis.call('HSET', base .. ':m', member, user)
    redis.call('SADD', P .. ':n:' .. node, membership(kind, id, sid))
    local raw = redis.call('HGET', base .. ':u', user)
    if raw then
      local u = cjson.decode(raw)
      u.connections = u.connections + 1
      redis.call('HSET', base .. ':u', user, cjson.encode(u))
      change = 'another'
    else
      redis.call('HSET', base .. ':u', user,
        cjson.encode({ role = role, onlineAt = at, connections = 1 }))
      change = 'first'
    end
  end
  -- A call's room closes when it ends; should no close reach Redis (it
  -- was away then), its keys go a day after the last join.
  for _, suffix in ipairs({ ':m', ':u', ':s', ':b' }) do
    redis.call('EXPIRE', base .. suffix, KEEP)
  end
  local out = { 'ok', change, tostring(redis.call('EXISTS', base .. ':e')) }
  -- The others, as "user", "role" pairs after their count.
  local flat = redis.call('HGETALL', base .. ':u')
  local peers = {}
  for i = 1, #flat, 2 do
    if flat[i] ~= user then
      peers[#peers + 1] = flat[i]
      peers[#peers + 1] = cjson.decode(flat[i + 1]).role
    end
  end
  out[#out + 1] = tostring(#peers / 2)
  for _, v in ipairs(peers) do
    out[#out + 1] = v
  end
  -- The replay: every other sender's kept messages meant for everyone or
  -- for this user, each sender's in the order sent.
  if kind == 'c' and change ~= 'again' then
    for _, sender in ipairs(redis.call('LRANGE', base .. ':s', 0, -1)) do
      if sender ~= user then
        for _, kept in ipairs(redis.call('LRANGE', base .. ':l:' .. sender, 0, -1)) do
          local nl = string.find(kept, '\n', 1, true)
          local to = string.sub(kept, 1, nl - 1)
          if to == '' or to == user then
            out[#out + 1] = string.sub(kept, nl + 1)
          end
        end
      end
    end
  end
  emit('t', 'join', 'k', kind, 'r', id, 'n', node, 's', sid, 'u', user, 'role', role,
    'c', change, 'j', jid, 'p', users_json(base))
  return out
elseif op == 'relay' then
  -- id, node, sid, user, to ('' for everyone), signal, description (1/0),
  -- size, body, max messages, max bytes
  local id, node, sid, user, to, signal, desc, size, body, max_n, max_b =
    ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11]),
    ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14])
  local base = room('c', id)
  if redis.call('EXISTS', base .. ':x') == 1 then
    return 'closed'
  end
  if redis.call('HGET', base .. ':m', node .. '/' .. sid) ~= user then
    return 'absent'
  end
  if to ~= '' and (to == user or redis.call('HEXISTS', base .. ':u', to) == 0) then
    return 'no_target'
  end
  local log = base .. ':l:' .. user
  local kept = to .. '\n' .. signal .. '\n' .. body
  local bytes = redis.call('HGET', base .. ':b', user)
  if not bytes then
    redis.call('RPUSH', base .. ':s', user)
    bytes = 0
  end
  if desc == '1' then
    redis.call('DEL', log)
    redis.call('RPUSH', log, kept)
    redis.call('HSET', base .. ':b', user, size)
  elseif redis.call('LLEN', log) < max_n and tonumber(bytes) + size <= max_b then
    redis.call('RPUSH', log, kept)
    redis.call('HSET', base .. ':b', user, tonumber(bytes) + size)
  end
  redis.call('EXPIRE', log, KEEP)
  emit('t', 'relay', 'r', id, 'u', user, 'to', to, 'g', signal, 'b', body)
  return 'ok'
elseif op == 'leave' then
  -- kind, id, node, sid
  leave(ARGV[4], ARGV[5], ARGV[6], ARGV[7])
  return 'ok'
elseif op == 'leave_all' then
  -- node, sid: every room the socket is in
  local node, sid = ARGV[4], ARGV[5]
  for _, entry in ipairs(redis.call('SMEMBERS', P .. ':n:' .. node)) do
    local kind, id, of = parse_membership(entry)
    if of == sid then
      leave(kind, id, node, sid)
    end
  end
  return 'ok'
elseif op == 'close' then
  -- kind, id: the call ended; nobody joins or relays any more
  local kind, id = ARGV[4], ARGV[5]
  local base = room(kind, id)
  if redis.call('EXISTS', base .. ':x') == 1 then
    return 'ok'
  end
  redis.call('SET', base .. ':x', '1', 'EX', KEEP)
  local flat = redis.call('HGETALL', base .. ':m')
  for i = 1, #flat, 2 do
    local slash = string.find(flat[i], '/', 1, true)
    local node, sid = string.sub(flat[i], 1, slash - 1), string.sub(flat[i], slash + 1)
    redis.call('SREM', P .. ':n:' .. node, membership(kind, id, sid))
  end
  for _, sender in ipairs(redis.call('LRANGE', base .. ':s', 0, -1)) do
    redis.call('DEL', base .. ':l:' .. sender)
  end
  redis.call('DEL', base .. ':s', base .. ':b', base .. ':m', base .. ':u')
  emit('t', 'close', 'k', kind, 'r', id)
  return 'ok'
elseif op == 'ended' then
  -- id: the chat session ended (typing is refused from now on)
  local id = ARGV[4]
  if redis.call('SET', room('h', id) .. ':e', '1', 'EX', KEEP, 'NX') then
    emit('t', 'ended', 'r', id)
  end
  return 'ok'
elseif op == 'tell' then
  -- id, user, what ('typing' or 'read'), value
  local id, user, what, value = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
  local base = room('h', id)
  if what == 'typing' and redis.call('EXISTS', base .. ':e') == 1 then
    return 'ended'
  end
  emit('t', 'tell', 'r', id, 'u', user, 'w', what, 'v', value)
  return 'ok'
elseif op == 'beat' then
  -- node, stale after (ms): marks this node alive and reaps every node
  -- silent for longer. Returns 'new' when this node was not known (its
  -- first beat, or Redis lost it: restarted, or this node was reaped),
  -- then the number of nodes reaped and the stream's length.
  local node, stale = ARGV[4], tonumber(ARGV[5])
  local now = now_ms()
  local known = redis.call('ZSCORE', P .. ':nodes', node)
  redis.call('ZADD', P .. ':nodes', now, node)
  local reaped = 0
  for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P .. ':nodes', '-inf', now - stale)) do
    for _, entry in ipairs(redis.call('SMEMBERS', P .. ':n:' .. dead)) do
      local kind, id, sid = parse_membership(entry)
      leave(kind, id, dead, sid)
    end
    redis.call('DEL', P .. ':n:' .. dead)
    for _, user in ipairs(redis.call('SMEMBERS', P .. ':nu:' .. dead)) do
      redis.call('HDEL', P .. ':c:' .. user, dead)
    end
    redis.call('DEL', P .. ':nu:' .. dead)
    redis.call('ZREM', P .. ':nodes', dead)
    reaped = reaped + 1
  end
  return { known and 'known' or 'new', tostring(reaped),
    tostring(redis.call('XLEN', P .. ':ev')) }
elseif op == 'conn' then
  -- node, user, change in open sockets (+1 or -1), now (ms)
  local node, user, delta, at = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
  local n = redis.call('HINCRBY', P .. ':c:' .. user, node, delta)
  if n <= 0 then
    redis.call('HDEL', P .. ':c:' .. user, node)
    redis.call('SREM', P .. ':nu:' .. node, user)
  else
    redis.call('SADD', P .. ':nu:' .. node, user)
  end
  redis.call('ZADD', P .. ':seen', 'GT', at, user)
  return 'ok'
elseif op == 'sync' then
  -- node, forget-before (ms), then (user, open sockets, last alive ms)
  -- for every user this node knows: its whole truth, which repairs any
  -- `conn` step lost while Redis was away.
  local node, cutoff = ARGV[4], ARGV[5]
  local here = {}
  for i = 6, #ARGV, 3 do
    local user, n, at = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
    if n > 0 then
      here[user] = true
      redis.call('HSET', P .. ':c:' .. user, node, n)
      redis.call('SADD', P .. ':nu:' .. node, user)
    end
    redis.call('ZADD', P .. ':seen', 'GT', at, user)
  end
  for _, user in ipairs(redis.call('SMEMBERS', P .. ':nu:' .. node)) do
    if not here[user] then
      redis.call('HDEL', P .. ':c:' .. user, node)
      redis.call('SREM', P .. ':nu:' .. node, user)
    end
  end
  redis.call('ZREMRANGEBYSCORE', P .. ':seen', '-inf', '(' .. cutoff)
  return 'ok'
elseif op == 'alive' then
  -- users: for each, 'on' while it has a socket on a live node, else when
  -- it was last alive (ms), or '' if never seen
  local out = {}
  for i = 4, #ARGV do
    if redis.call('HLEN', P .. ':c:' .. ARGV[i]) > 0 then
      out[#out + 1] = 'on'
    else
      out[#out + 1] = redis.call('ZSCORE', P .. ':seen', ARGV[i]) or ''
    end
  end
  return out
end
return redis.error_reply('unknown operation ' .. tostring(op))
