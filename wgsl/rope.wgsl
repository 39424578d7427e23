// Rotary position embedding over interleaved pairs (FLUX: diffusers' apply_rotary_emb with
// use_real, unbind dim −1), optionally after an RMSNorm of each head (FLUX's norm_q/k and
// norm_added_q/k), reading up to two inputs that are concatenated along tokens (the text
// and image streams of a double block) into one joint [B, S, H·D] output.
//
// One workgroup per (batch, joint token, head); WG threads stride over the D/2 pairs and
// sum squares with a tree of log2(WG) steps in workgroup memory. Rotation and norm run in
// f32; `freqs` [S, D/2, 2] holds (cos, sin) per token and pair, always f32 (as diffusers
// rotates in float32 whatever the model dtype).
override WG: u32 = 64u; // a power of two

struct Params {
  groups: u32, s: u32, heads: u32, half: u32,  // B·S·H, joint tokens, heads, D/2
  t0: u32, row0: u32, col0: u32, flags: u32,   // part 0: tokens, row width, first column; flags: 1 norm, 2 weight 0, 4 weight 1
  row1: u32, col1: u32, eps: f32, pad: u32,    // part 1: row width, first column
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x0: array<DT>;
@group(0) @binding(2) var<storage, read> x1: array<DT>;
@group(0) @binding(3) var<storage, read> w0: array<DT>;
@group(0) @binding(4) var<storage, read> w1: array<DT>;
@group(0) @binding(5) var<storage, read> freqs: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<DT>;

var<workgroup> red: array<f32, WG>;

fn load(part1: bool, i: u32) -> f32 {
  if (part1) { return f32(x1[i]); }
  return f32(x0[i]);
}

fn weight(part1: bool, i: u32) -> f32 {
  if (part1) {
    if ((p.flags & 4u) != 0u) { return f32(w1[i]); }
    return 1.0;
  }
  if ((p.flags & 2u) != 0u) { return f32(w0[i]); }
  return 1.0;
}

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let gi = wid.x + wid.y * ng.x;
  if (gi >= p.groups) { return; } // uniform per workgroup
  let head = gi % p.heads;
  let tok = (gi / p.heads) % p.s;
  let b = gi / (p.heads * p.s);
  let d = 2u * p.half;
  let part1 = tok >= p.t0;
  var base: u32;
  if (part1) {
    base = (b * (p.s - p.t0) + tok - p.t0) * p.row1 + p.col1 + head * d;
  } else {
    base = (b * p.t0 + tok) * p.row0 + p.col0 + head * d;
  }
  var r = 1.0;
  if ((p.flags & 1u) != 0u) {
    var ss = 0.0;
    for (var j = lid; j < d; j += WG) {
      let v = load(part1, base + j);
      ss += v * v;
    }
    red[lid] = ss;
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
      workgroupBarrier();
      if (lid < k) { red[lid] += red[lid + k]; }
    }
    workgroupBarrier();
    r = inverseSqrt(red[0] / f32(d) + p.eps);
  }
  let ob = gi * d; // ((b·S + tok)·H + head)·D
  for (var j = lid; j < p.half; j += WG) {
    let a = load(part1, base + 2u * j) * r * weight(part1, 2u * j);
    let c = load(part1, base + 2u * j + 1u) * r * weight(part1, 2u * j + 1u);
    let f = (tok * p.half + j) * 2u;
    let cs = freqs[f];
    let sn = freqs[f + 1u];
    out[ob + 2u * j] = DT(a * cs - c * sn);
    out[ob + 2u * j + 1u] = DT(c * cs + a * sn);
  }
}
