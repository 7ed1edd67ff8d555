-- nn.lua — the layer library the model specs build on.
--
-- Every function here is plain Lua over the frontend's tensor API (see
-- docs/models.md): nothing in it is special to the C side. Parameter names
-- follow DESIGN.md section 5: a layer creates "<name>.weight" and friends
-- inside the current scope, and scope("layers.0", fn) prefixes them.
-- Shapes: a sequence is [n, d] (position, feature).

local nn = {}

nn.scope = scope

-- Runs fn(...) at the top level of names (for tensors shared by layers).
function nn.toplevel(fn, ...) return scope("", fn, ...) end

-- For options(): the graph's sequence length defaults to the training length.
function nn.default_n(o) return o.L end

-- PyTorch's default nn.Linear / nn.Conv1d weight: U(+-1/sqrt(fan_in)).
function nn.fan_in_uniform(fan_in, scale)
  local a = (scale or 1) / math.sqrt(fan_in)
  return init.uniform(-a, a)
end

-- x[..., n_in] -> x W^T (+ b) : [..., n_out]. Creates <name>.weight
-- [n_out, n_in] (opt.init, default U(+-1/sqrt(n_in))) and, if opt.bias is
-- true or an initialiser, <name>.bias [n_out] (zeros when true).
function nn.linear(x, name, n_out, opt)
  opt = opt or {}
  local shape = x.shape
  local n_in = shape[#shape]
  local w = param(name .. ".weight", {n_out, n_in}, opt.init or nn.fan_in_uniform(n_in))
  local y
  if #shape == 2 then
    y = x:matmul(w, {tb = true})
  else -- matmul wants equal ranks: flatten the leading axes and restore them
    local out = {table.unpack(shape)}
    out[#out] = n_out
    y = x:reshape{-1, n_in}:matmul(w, {tb = true}):reshape(out)
  end
  if opt.bias then
    local bi = opt.bias == true and init.constant(0) or opt.bias
    y = y + param(name .. ".bias", {n_out}, bi)
  end
  return y
end

-- x[n, n_in] -> the parts of x W^T, for one <name>.weight [sum(sizes), n_in]
-- (no bias): part k is x times W's k-th block of rows, transposed. The
-- same values as slicing nn.linear's result, computed as one product per
-- part: no product of an awkward width (x_proj's 1 + 2N), and the
-- backward adds row blocks of the weight's gradient instead of zero
-- padded [n, sum(sizes)] gradients.
function nn.linear_parts(x, name, sizes, opt)
  opt = opt or {}
  local n_in, n_out = x:size(1), 0
  for _, s in ipairs(sizes) do n_out = n_out + s end
  local w = param(name .. ".weight", {n_out, n_in}, opt.init or nn.fan_in_uniform(n_in))
  local parts, at = {}, 0
  for k, s in ipairs(sizes) do
    parts[k] = x:matmul(w:slice(0, at, at + s), {tb = true})
    at = at + s
  end
  return table.unpack(parts)
end

-- LayerNorm over the last axis: weight 1, bias 0, biased variance.
function nn.layernorm(x, name, eps)
  local d = x:size(-1)
  local xc = x - x:mean(-1)
  local y = xc * rsqrt((xc * xc):mean(-1) + (eps or 1e-5))
  return y * param(name .. ".weight", {d}, init.constant(1))
       + param(name .. ".bias", {d}, init.constant(0))
end

-- RMSNorm over the last axis: weight 1, no bias.
function nn.rmsnorm(x, name, eps)
  local d = x:size(-1)
  local y = x * rsqrt((x * x):mean(-1) + (eps or 1e-5))
  return y * param(name .. ".weight", {d}, init.constant(1))
end

-- The frozen embedding V (bound by the runtime): tokens i32[n] -> [n, d].
function nn.embedding(tokens, K, d)
  local V = nn.toplevel(const, "embedding.weight", {K, d}, later)
  return gather(V, tokens)
end

-- Learned positions: a table of `rows` rows, N(0, 0.02); the first n.
function nn.learned_pe(n, rows, d)
  if n > rows then
    raise(("learned PE has %d rows, the sequence %d positions"):format(rows, n))
  end
  local P = nn.toplevel(param, "pos_emb.weight", {rows, d}, init.normal(0, 0.02))
  return P:slice(0, 0, n)
end

-- RoPE tables cos/sin [n, dh/2]: angle t * base^(-2i/dh) for pair i.
-- Made once per graph, as top-level consts "rope.cos" and "rope.sin".
function nn.rope_tables(n, dh, base)
  if leaf("rope.cos") then return leaf("rope.cos"), leaf("rope.sin") end
  local c, s = {}, {}
  for t = 0, n - 1 do
    for i = 0, dh // 2 - 1 do
      local angle = t * base ^ (-2 * i / dh)
      c[#c + 1], s[#s + 1] = math.cos(angle), math.sin(angle)
    end
  end
  return nn.toplevel(function()
    return const("rope.cos", {n, dh // 2}, c), const("rope.sin", {n, dh // 2}, s)
  end)
end

-- Rotates the pairs (2i, 2i+1) of x[n, H, dh] by the tables' angles: the
-- rope op (one node, its VJP the inverse rotation; the same arithmetic as
-- x0 * c - x1 * s and x0 * s + x1 * c on slices, which cost a dozen nodes).
-- Its shape rule reports an odd dh or mismatched tables at the caller.
function nn.rope(x, cos, sin) return rope(x, cos, sin) end

-- Causal softmax attention on x[n, d]: wq, wk, wv, wo [d, d] without bias;
-- o.heads heads of d/heads; o.pe "rope" rotates q and k (o.rope_base).
function nn.attention(x, o)
  local n, d, H = x:size(0), x:size(1), o.heads or 1
  if d % H ~= 0 then raise(("attention: d %d is not a multiple of heads %d"):format(d, H)) end
  local dh = d // H
  local q = nn.linear(x, "wq", d):reshape{n, H, dh}
  local k = nn.linear(x, "wk", d):reshape{n, H, dh}
  local v = nn.linear(x, "wv", d):reshape{n, H, dh}
  if o.pe == "rope" then
    local cos, sin = nn.rope_tables(n, dh, o.rope_base or 10000)
    q, k = nn.rope(q, cos, sin), nn.rope(k, cos, sin)
  end
  q, k, v = q:permute{1, 0, 2}, k:permute{1, 0, 2}, v:permute{1, 0, 2} -- [H, n, dh]
  -- the weights [H, n, n] (query, key), probed for `recall inspect`
  local w = probe("attn", (q:matmul(k, {tb = true}) / math.sqrt(dh)):softmax{causal = true})
  local y = w:matmul(v):permute{1, 0, 2}:reshape{n, d}
  return nn.linear(y, "wo", d)
end

-- The Mamba mixer of state-spaces/mamba mamba_simple.py on x[n, d], with
-- E = expand*d, N = d_state, R = dt_rank, W = d_conv. out_proj is scaled
-- by 1/sqrt(o.layers) as mixer_seq_simple.py's _init_weights does.
function nn.mamba(x, o)
  local d = x:size(1)
  local E, N, R, W = o.expand * d, o.d_state, o.dt_rank, o.d_conv
  local u, z = nn.linear_parts(x, "in_proj", {E, E})
  local cw = param("conv1d.weight", {E, W}, nn.fan_in_uniform(W))
  local cb = param("conv1d.bias", {E}, nn.fan_in_uniform(W)) -- Conv1d's default
  u = silu(conv1d(u, cw) + cb)
  local dt, bc = nn.linear_parts(u, "x_proj", {R, 2 * N}) -- bc = [B | C]
  local delta = probe("dt", softplus(nn.linear(dt, "dt_proj", E, -- [n, E], probed
    {init = nn.fan_in_uniform(R), bias = init.dt_bias{dt_min = 1e-3, dt_max = 0.1, floor = 1e-4}})))
  local A = -exp(param("A_log", {E, N}, init.a_log()))
  local y = scan(u, delta, A, bc) + u * param("D", {E}, init.constant(1))
  y = y * silu(z)
  return nn.linear(y, "out_proj", d, {init = nn.fan_in_uniform(E, 1 / math.sqrt(o.layers))})
end

-- A pre-norm residual block: h + mixer(norm(h)), named layers.<i>.norm and
-- layers.<i>.mixer.
function nn.block(h, i, norm, mixer, o)
  return scope("layers." .. i, function()
    return h + scope("mixer", mixer, norm(h, "norm"), o)
  end)
end

-- The per-example interface: inputs tokens i32[n], pos i32[], label i32[].
function nn.inputs(o)
  return input("tokens", "i32", {o.n}), input("pos", "i32", {}), input("label", "i32", {})
end

-- Readout at the read position: final norm, lm_head [K, d] + bias;
-- outputs "logits" f32[K] and "loss" (cross-entropy against label).
function nn.readout(h, pos, label, norm, K)
  local x = norm(select_row(h, pos), "norm_f")
  local logits = nn.linear(x, "lm_head", K, {bias = true})
  output("logits", logits)
  output("loss", cross_entropy(logits, label))
  return logits
end

return nn
