-- mamba.lua — the study's Mamba (DESIGN.md 1): residual blocks
-- h + Mamba(RMSNorm(h)) with the mixer of mamba_simple.py, final RMSNorm,
-- readout lm_head at the read position.
local nn = require "nn"

local o = options{
  K = 16, d = 8, L = 64, n = nn.default_n, -- n: this graph's length
  layers = 2, expand = 2, d_state = 16, d_conv = 4,
  dt_rank = function(o) return math.ceil(o.d / 16) end,
}

local tokens, pos, label = nn.inputs(o)
local h = nn.embedding(tokens, o.K, o.d)
for i = 0, o.layers - 1 do
  h = nn.block(h, i, nn.rmsnorm, nn.mamba, o)
end
nn.readout(h, pos, label, nn.rmsnorm, o.K)
