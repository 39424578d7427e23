// GEMM shared part: the params, the epilogue bindings, and the store that applies the
// epilogue ([out's value,] bias, activation, gate, residual). The kernel checks row < M and col < N.
override HAS_BIAS: u32 = 0u;
override BIAS_ROWS: u32 = 0u; // 1: bias is [B, N], row m uses bias row m / rpg (as the gate)
override ACT: u32 = 0u; // 0 none, 1 gelu (tanh), 2 silu, 3 quick gelu (CLIP)
override HAS_RES: u32 = 0u;
override HAS_GATE: u32 = 0u;
override ACCUM: u32 = 0u; // 1: out's own value is added to the product first (dense gemm only)

// K4 = ceil(K / 4), K8 = ceil(K / 8): the 4- and 8-wide steps along K (tails zero-padded).
struct Params { M: u32, N: u32, K: u32, K4: u32, rpg: u32, K8: u32, p0: u32, p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<DT>;
@group(0) @binding(4) var<storage, read> res: array<DT>;
@group(0) @binding(5) var<storage, read> gate: array<DT>;
@group(0) @binding(6) var<storage, read_write> out: array<DT>;

fn gemm_act(v: f32) -> f32 {
  if (ACT == 1u) {
    // GELU, tanh approximation: 0.5·v·(1 + tanh(u)) = v·sigmoid(2u), u = sqrt(2/π)(v + 0.044715v³);
    // the sigmoid form is one exp (and much less code inlined per output on CPU adapters).
    return v / (1.0 + exp(-1.5957691216057308 * (v + 0.044715 * v * v * v)));
  }
  if (ACT == 2u) { return v / (1.0 + exp(-v)); }
  if (ACT == 3u) { return v / (1.0 + exp(-1.702 * v)); } // x·sigmoid(1.702x)
  return v;
}

fn gemm_store(row: u32, col: u32, acc: f32) {
  let i = row * p.N + col;
  var y = acc;
  if (ACCUM != 0u) { y += f32(out[i]); } // read, then written, by this invocation alone
  if (HAS_BIAS != 0u) { y += f32(bias[select(col, (row / p.rpg) * p.N + col, BIAS_ROWS != 0u)]); }
  y = gemm_act(y);
  if (HAS_GATE != 0u) { y *= f32(gate[(row / p.rpg) * p.N + col]); }
  if (HAS_RES != 0u) { y += f32(res[i]); }
  out[i] = DT(y);
}
