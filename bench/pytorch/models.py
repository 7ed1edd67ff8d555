"""The five models of the study (DESIGN.md section 1) in plain PyTorch.

Written from the definitions in DESIGN.md, for the side-by-side benchmark
and as an independent check of the golden data. state_dict() keys are the
project's parameter names (DESIGN.md section 5) with one exception kept
PyTorch-native: conv1d.weight is nn.Conv1d's [E, 1, d_conv] here and
[E, d_conv] in recall's files; to_project()/from_project() convert.

A model maps tokens [B, n] (int64) to logits [B, K] read at position n-1.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MODELS = ("transformer_rope", "transformer_learned", "transformer_nope",
          "mamba", "hybrid")


def kind_of(label, prog):
    """The MODELS entry of a command-line label ("transformer" is RoPE's);
    exits naming prog and the choices for an unknown one."""
    kind = label.replace("-", "_")
    if kind == "transformer":
        kind = "transformer_rope"
    if kind not in MODELS:
        raise SystemExit(f"{prog}: unknown model '{label}' (one of "
                         + ", ".join(k.replace('_', '-') for k in MODELS) + ")")
    return kind


def embedding_table(K, d):
    """V: numpy.random.seed(0); randn(K, d), rows normalised (float64)."""
    np.random.seed(0)
    V = np.random.randn(K, d)
    return V / np.linalg.norm(V, axis=1, keepdims=True)


def fan_in_uniform_(w, fan_in, scale=1.0):
    a = scale / math.sqrt(fan_in)
    with torch.no_grad():
        w.uniform_(-a, a)
    return w


def linear(n_in, n_out, bias=False):
    """nn.Linear with PyTorch's U(+-1/sqrt(fan_in)) weight, zero bias."""
    m = nn.Linear(n_in, n_out, bias=bias)
    fan_in_uniform_(m.weight, n_in)
    if bias:
        nn.init.zeros_(m.bias)
    return m


def softplus(x):
    # The exact stable form (no threshold), as recall defines it.
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Frozen(nn.Module):
    """Holds the frozen embedding V as a buffer named `weight`."""

    def __init__(self, table):
        super().__init__()
        self.register_buffer("weight", table)


class Attention(nn.Module):
    """Causal softmax attention, q/k/v/o projections without bias."""

    def __init__(self, d, heads=1, rope=False, rope_base=10000.0):
        super().__init__()
        assert d % heads == 0
        self.heads, self.dh = heads, d // heads
        self.rope, self.rope_base = rope, rope_base
        self.wq, self.wk = linear(d, d), linear(d, d)
        self.wv, self.wo = linear(d, d), linear(d, d)
        self._tables = {}

    def rope_tables(self, n, dtype, device):
        key = (n, dtype, device)
        if key not in self._tables:
            # pair i rotates by angle t * base^(-2i/dh); built in float64
            i = torch.arange(self.dh // 2, dtype=torch.float64)
            freq = self.rope_base ** (-2.0 * i / self.dh)
            ang = torch.arange(n, dtype=torch.float64)[:, None] * freq[None, :]
            self._tables[key] = (ang.cos().to(device=device, dtype=dtype),
                                ang.sin().to(device=device, dtype=dtype))
        return self._tables[key]

    def causal_mask(self, n, dtype, device):
        key = ("mask", n, dtype, device)
        if key not in self._tables:  # -inf above the diagonal: key j > query i
            m = torch.full((n, n), float("-inf"), dtype=dtype, device=device).triu(1)
            self._tables[key] = m
        return self._tables[key]

    def rotate(self, x, cos, sin):
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack((even * cos - odd * sin, even * sin + odd * cos),
                           dim=-1).flatten(-2)

    def forward(self, x):
        B, n, d = x.shape
        split = lambda t: t.view(B, n, self.heads, self.dh).transpose(1, 2)
        q, k, v = split(self.wq(x)), split(self.wk(x)), split(self.wv(x))
        if self.rope:
            cos, sin = self.rope_tables(n, x.dtype, x.device)
            q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        s = (q / math.sqrt(self.dh)) @ k.transpose(-1, -2)    # scale the smaller tensor
        a = torch.softmax(s + self.causal_mask(n, x.dtype, x.device), dim=-1)
        y = (a @ v).transpose(1, 2).reshape(B, n, d)
        return self.wo(y)


def selective_scan(u, delta, A, Bm, Cm, D):
    """y[t] = C[t].h[t] + D*u[t], h[t] = exp(delta[t] A) h[t-1] + delta[t] B[t] u[t].

    u, delta [b, n, E]; A [E, N]; Bm, Cm [b, n, N]; D [E]. Sequential over
    time in plain PyTorch. The per-step factors are formed inside the loop:
    materialising them for all steps ([b, n, E, N], 32 MiB at d 64) costs
    more in fresh memory than it saves in op count. Inputs are split with
    unbind (indexing x[:, t] would cost a full-size zero gradient per step
    in backward).
    """
    b, n, E = u.shape
    dts = delta.transpose(0, 1).unsqueeze(-1).unbind(0)            # n x [b, E, 1]
    dtus = (delta * u).transpose(0, 1).unsqueeze(-1).unbind(0)     # n x [b, E, 1]
    Bs = Bm.transpose(0, 1).unsqueeze(2).unbind(0)                 # n x [b, 1, N]
    Cs = Cm.transpose(0, 1).unsqueeze(2).unbind(0)                 # n x [b, 1, N]
    h = u.new_zeros(b, E, A.shape[1])
    ys = []
    for t in range(n):
        h = torch.addcmul(dtus[t] * Bs[t], torch.exp(dts[t] * A), h)
        ys.append((h * Cs[t]).sum(-1))                             # [b, E]
    return torch.stack(ys, dim=1) + u * D


class Mamba(nn.Module):
    """The mixer of state-spaces/mamba mamba_simple.py, without CUDA kernels."""

    def __init__(self, d, n_layers, expand=2, d_state=16, d_conv=4, dt_rank=None,
                 dt_min=1e-3, dt_max=1e-1, dt_floor=1e-4):
        super().__init__()
        E = expand * d
        R = dt_rank or math.ceil(d / 16)
        self.E, self.N, self.R, self.W = E, d_state, R, d_conv
        self.in_proj = linear(d, 2 * E)
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, padding=d_conv - 1, bias=True)
        fan_in_uniform_(self.conv1d.weight, d_conv)
        fan_in_uniform_(self.conv1d.bias, d_conv)
        self.x_proj = linear(E, R + 2 * d_state)
        self.dt_proj = nn.Linear(R, E, bias=True)
        fan_in_uniform_(self.dt_proj.weight, 1, scale=R ** -0.5)  # U(+-R^-0.5)
        # dt log-uniform in [dt_min, dt_max], floored; bias = softplus^-1(dt)
        dt = torch.exp(torch.rand(E) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(
            torch.arange(1, d_state + 1, dtype=torch.float32).repeat(E, 1)))
        self.D = nn.Parameter(torch.ones(E))
        self.out_proj = linear(E, d)
        with torch.no_grad():  # mixer_seq_simple's prenorm-residual rescale
            self.out_proj.weight /= math.sqrt(n_layers)

    def forward(self, h):
        b, n, _ = h.shape
        x, z = self.in_proj(h).chunk(2, dim=-1)                 # [b, n, E] each
        x = self.conv1d(x.transpose(1, 2))[..., :n].transpose(1, 2)
        x = F.silu(x)
        dt, Bm, Cm = self.x_proj(x).split([self.R, self.N, self.N], dim=-1)
        delta = softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log)
        y = selective_scan(x, delta, A, Bm, Cm, self.D)
        return self.out_proj(y * F.silu(z))


class Block(nn.Module):
    """h + mixer(norm(h))."""

    def __init__(self, norm, mixer):
        super().__init__()
        self.norm, self.mixer = norm, mixer

    def forward(self, h):
        return h + self.mixer(self.norm(h))


class Model(nn.Module):
    """One of MODELS; L is the training length (learned PE has 3L rows)."""

    def __init__(self, kind, K=16, d=8, L=64, heads=1, rope_base=10000.0,
                 layers=2, expand=2, d_state=16, d_conv=4):
        super().__init__()
        assert kind in MODELS, kind
        self.kind = kind
        self.embedding = Frozen(torch.tensor(embedding_table(K, d), dtype=torch.float32))
        if kind == "transformer_learned":
            self.pos_emb = nn.Embedding(3 * L, d)
            nn.init.normal_(self.pos_emb.weight, 0.0, 0.02)
        mamba = lambda: Mamba(d, layers, expand, d_state, d_conv)
        attn = lambda rope: Attention(d, heads, rope, rope_base)
        if kind.startswith("transformer"):
            blocks = [Block(nn.LayerNorm(d, eps=1e-5), attn(kind == "transformer_rope"))
                      for _ in range(layers)]
            self.norm_f = nn.LayerNorm(d, eps=1e-5)
        elif kind == "mamba":
            blocks = [Block(RMSNorm(d), mamba()) for _ in range(layers)]
            self.norm_f = RMSNorm(d)
        else:  # hybrid: Mamba block, then attention block without PE
            blocks = [Block(RMSNorm(d), mamba()), Block(nn.LayerNorm(d, eps=1e-5), attn(False))]
            self.norm_f = RMSNorm(d)
        self.layers = nn.ModuleList(blocks)
        self.lm_head = linear(d, K, bias=True)

    def forward(self, tokens):
        n = tokens.shape[1]
        h = F.embedding(tokens, self.embedding.weight)
        if self.kind == "transformer_learned":
            h = h + self.pos_emb.weight[:n]
        for blk in self.layers:
            h = blk(h)
        return self.lm_head(self.norm_f(h[:, -1]))      # readout at n-1

    def loss(self, tokens, labels):
        logits = self(tokens)
        return F.cross_entropy(logits, labels), logits


def to_project(name, t):
    """A state_dict tensor as recall stores it (conv weights [E, d_conv])."""
    if name.endswith("conv1d.weight"):
        return t.reshape(t.shape[0], t.shape[-1])
    return t


def from_project(model, tensors):
    """Loads recall-named tensors (numpy or torch) into model, in place.
    Returns the names of the model's state it did not find."""
    state = model.state_dict()
    missing = []
    with torch.no_grad():
        for name, dst in state.items():
            if name not in tensors:
                missing.append(name)
                continue
            src = torch.as_tensor(np.array(tensors[name]))  # a writable copy
            dst.copy_(src.reshape(dst.shape).to(dst.dtype))
    return missing


def ar_batch(gen, B, n, K=16, M=1, tau=1):
    """A batch of AR sequences (DESIGN.md section 1): tokens [B, n], labels [B]."""
    q = torch.randint(M, (B,), generator=gen)
    v = torch.randint(K, (B,), generator=gen)
    x = torch.randint(K - 1, (B, n), generator=gen)
    x = x + (x >= q[:, None]).long()                # uniform over [K] \ {q}
    i = torch.randint(n - tau - 1, (B,), generator=gen)  # 0 .. n-tau-2
    rows = torch.arange(B)
    x[rows, i] = q
    x[rows, i + tau] = v
    x[:, n - 1] = q
    return x, v
