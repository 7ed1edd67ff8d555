local nn = require "nn"
local x = input("x", "f32", {4, 3})
local label = input("label", "i32", {})
local pos = input("pos", "i32", {})
local h = nn.linear(x, "l", 3)
h = nn.layernorm(h, "n")
local logits = select_row(h, pos)
output("logits", logits)
output("loss", cross_entropy(logits, label))
