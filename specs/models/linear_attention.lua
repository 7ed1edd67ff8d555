-- linear_attention.lua — worked example of docs/models.md: an architecture
-- written only in Lua. Causal linear attention (Katharopoulos et al. 2020,
-- "Transformers are RNNs"): softmax(q k^T) is replaced by the kernel
-- phi(q) phi(k)^T with phi(x) = elu(x) + 1, normalised by its row sums:
--   y_t = sum_{s<=t} (phi(q_t).phi(k_s)) v_s / (sum_{s<=t} phi(q_t).phi(k_s) + eps)
-- Pre-LayerNorm residual blocks, final LayerNorm, no positional encoding.
local nn = require "nn"

local o = options{
  K = 16, d = 8, L = 64, n = nn.default_n, -- n: this graph's length
  layers = 2, heads = 1, eps = 1e-6,
}

-- elu(x) + 1 from the IR's ops: relu(x) + exp(min(x, 0)), and
-- min(x, 0) = -relu(-x).
local function phi(x) return relu(x) + exp(-relu(-x)) end

-- [n, n]: 1 where key s <= query t, else 0 (a const computed here, once).
local function causal_mask(n)
  if leaf("causal_mask") then return leaf("causal_mask") end
  local m = {}
  for t = 0, n - 1 do
    for s = 0, n - 1 do m[#m + 1] = s <= t and 1 or 0 end
  end
  return nn.toplevel(const, "causal_mask", {n, n}, m)
end

-- The mixer: x[n, d] -> [n, d]; wq, wk, wv, wo [d, d] like attention.
local function linear_attention(x, o)
  local n, d, H = x:size(0), x:size(1), o.heads
  local dh = d // H
  local function heads(t) return t:reshape{n, H, dh}:permute{1, 0, 2} end -- [H, n, dh]
  local q = phi(heads(nn.linear(x, "wq", d)))
  local k = phi(heads(nn.linear(x, "wk", d)))
  local v = heads(nn.linear(x, "wv", d))
  local s = q:matmul(k, {tb = true}) * causal_mask(n)   -- [H, n, n]
  local y = s:matmul(v) / (s:sum(-1) + o.eps)           -- sum keeps the axis: [H, n, 1]
  return nn.linear(y:permute{1, 0, 2}:reshape{n, d}, "wo", d)
end

local tokens, pos, label = nn.inputs(o)
local h = nn.embedding(tokens, o.K, o.d)
for i = 0, o.layers - 1 do
  h = nn.block(h, i, nn.layernorm, linear_attention, o)
end
nn.readout(h, pos, label, nn.layernorm, o.K)
