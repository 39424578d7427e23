// GroupNorm on channels-last images [B, P, C] (P = H·W positions), in three launches of the
// same grid: one workgroup per (chunk of positions, group, sample).
//   STAGE 0: the chunk's sum of x → part[0][b][g][chunk];
//   STAGE 1: the group's mean from those sums; the chunk's Σ(x − mean)² → part[1][b][g][chunk];
//   STAGE 2: mean and biased variance from the partials; out = (x − mean)/√(var + eps)·γ + β,
//            then SiLU when p.silu (diffusers' norm → SiLU pairs in one pass).
// Two passes over x, not Σx and Σx² in one: the variance of large-mean groups keeps its digits.
override WG: u32 = 256u;
override STAGE: u32 = 0u;

struct Params {
  pos: u32,   // positions per sample
  c: u32,     // channels
  cg: u32,    // channels per group
  groups: u32,
  chunk: u32, // positions per chunk
  nc: u32,    // chunks per group
  silu: u32,
  eps: f32,
  half: u32,  // B·groups·nc: where the squared deviations start in part
  pad0: u32,
  pad1: u32,
  pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> gamma: array<DT>;
@group(0) @binding(3) var<storage, read> beta: array<DT>;
@group(0) @binding(4) var<storage, read_write> part: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<DT>;

var<workgroup> red: array<f32, WG>;

fn reduce(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s /= 2u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  return red[0];
}

// The sum of the group's partials of one kind (0: sums, 1: squared deviations).
fn total(kind: u32, group_at: u32) -> f32 {
  let base = kind * p.half + group_at * p.nc;
  var s = 0.0;
  for (var j = 0u; j < p.nc; j++) { s += part[base + j]; }
  return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.x;
  let g = wid.y;
  let b = wid.z;
  let group_at = b * p.groups + g; // (sample, group) index
  let n = f32(p.pos * p.cg);
  let p0 = chunk * p.chunk;
  let elems = min(p.chunk, p.pos - p0) * p.cg;
  var mean = 0.0;
  if (STAGE > 0u) { mean = total(0u, group_at) / n; }
  if (STAGE < 2u) {
    var s = 0.0;
    for (var e = lid; e < elems; e += WG) {
      let v = f32(x[(b * p.pos + p0 + e / p.cg) * p.c + g * p.cg + e % p.cg]);
      s += select(v, (v - mean) * (v - mean), STAGE == 1u);
    }
    let r = reduce(s, lid);
    if (lid == 0u) { part[STAGE * p.half + group_at * p.nc + chunk] = r; }
    return;
  }
  let inv = 1.0 / sqrt(total(1u, group_at) / n + p.eps);
  for (var e = lid; e < elems; e += WG) {
    let ch = g * p.cg + e % p.cg;
    let at = (b * p.pos + p0 + e / p.cg) * p.c + ch;
    var v = (f32(x[at]) - mean) * inv * f32(gamma[ch]) + f32(beta[ch]);
    if (p.silu != 0u) { v = v / (1.0 + exp(-v)); }
    out[at] = DT(v);
  }
}
