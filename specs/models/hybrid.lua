-- hybrid.lua — the study's hybrid (DESIGN.md 1): a Mamba block (RMSNorm),
-- then an attention block (LayerNorm, no positional encoding), final
-- RMSNorm. With more layers the two kinds alternate, Mamba first.
local nn = require "nn"

local o = options{
  K = 16, d = 8, L = 64, n = nn.default_n, -- n: this graph's length
  layers = 2, heads = 1, expand = 2, d_state = 16, d_conv = 4,
  dt_rank = function(o) return math.ceil(o.d / 16) end,
}
-- The attention block has no positional encoding; `o` itself stays the
-- spec's options (the runtime re-runs the spec with them at other lengths).
local attn = setmetatable({pe = "nope"}, {__index = o})

local tokens, pos, label = nn.inputs(o)
local h = nn.embedding(tokens, o.K, o.d)
for i = 0, o.layers - 1 do
  if i % 2 == 0 then
    h = nn.block(h, i, nn.rmsnorm, nn.mamba, o)
  else
    h = nn.block(h, i, nn.layernorm, nn.attention, attn)
  end
end
nn.readout(h, pos, label, nn.rmsnorm, o.K)
