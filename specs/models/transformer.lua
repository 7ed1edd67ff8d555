-- transformer.lua — attention-only transformer of the study (DESIGN.md 1):
-- pre-LayerNorm residual attention blocks (no MLP), final LayerNorm,
-- readout lm_head at the read position.
--   --set pe=rope|learned|nope   positional encoding (learned: 3L rows)
--   --set heads=H                split d into H heads
local nn = require "nn"

local o = options{
  K = 16, d = 8, L = 64, n = nn.default_n, -- n: this graph's length
  layers = 2, heads = 1, pe = "rope", rope_base = 10000,
}
if o.pe ~= "rope" and o.pe ~= "learned" and o.pe ~= "nope" then
  error("pe must be rope, learned or nope, got " .. tostring(o.pe))
end

local tokens, pos, label = nn.inputs(o)
local h = nn.embedding(tokens, o.K, o.d)
if o.pe == "learned" then h = h + nn.learned_pe(o.n, 3 * o.L, o.d) end
for i = 0, o.layers - 1 do
  h = nn.block(h, i, nn.layernorm, nn.attention, o)
end
nn.readout(h, pos, label, nn.layernorm, o.K)
