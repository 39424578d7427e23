// PARO quantize-to-blocks: reorders one of q/k/v [B, T, ·] per head by the head's
// permutation (the reordering is fused here, where the attention operands are written)
// and quantizes each block of 64 positions × hd channels symmetrically with one scale:
// code = clamp(round((x − mean)·inv), ±qmax), inv = qmax / absmax, scale = absmax / qmax.
//
// One workgroup per (block, head, batch), one thread per position of the block.
// Q/K codes: u32 [B, H, nb·64, DP4], byte i of word w = channel 4w + i. V (transpose = 1)
// is written per block channel-major, u32 [B, H, nb, hd, 16], byte i of word w = position
// 4w + i, so P·V is a dot product of packed bytes along the keys.
// Scales: f32 [B, H, nb, 2] at s_off = (scale, inv). Positions past T get zero codes.
// qmax (127 INT8, 7 INT4) and the V layout are params: one pipeline serves q, k and v.
override DP4: u32 = 32u;      // u32 words per code row (hd padded to 16, / 4), ≥ the params'

const DMAX: u32 = 128u;

struct Params {
  t: u32, nb: u32, heads: u32, hd: u32,
  x_off: u32, x_row: u32, x_batch: u32, use_mean: u32,
  s_off: u32, dp4: u32, transpose: u32, qmax: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> codes: array<u32>;
@group(0) @binding(5) var<storage, read_write> scales: array<f32>;

var<workgroup> red: array<f32, 64>;
var<workgroup> rows: array<u32, 64u * DP4>; // V codes by position, before the transpose

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let blk = wid.x;
  let h = wid.y;
  let b = wid.z;
  let pos = blk * 64u + lid;
  let valid = pos < p.t;
  let tok = perm[h * p.t + min(pos, p.t - 1u)];
  let base = b * p.x_batch + tok * p.x_row + p.x_off + h * p.hd;
  let mbase = (b * p.heads + h) * p.hd;
  var vals: array<f32, DMAX>;
  var amax = 0.0;
  for (var d = 0u; d < p.hd; d++) {
    var v = f32(x[base + d]);
    if (p.use_mean != 0u) { v = v - mean[mbase + d]; }
    v = select(0.0, v, valid);
    vals[d] = v;
    amax = max(amax, abs(v));
  }
  red[lid] = amax;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let bmax = red[0];
  let qmax = p.qmax;
  let dp4 = p.dp4;
  let inv = select(0.0, qmax / bmax, bmax > 0.0);
  let bh = b * p.heads + h;
  if (lid == 0u) {
    let si = p.s_off + (bh * p.nb + blk) * 2u;
    scales[si] = bmax / qmax;
    scales[si + 1u] = inv;
  }
  for (var w = 0u; w < dp4; w++) {
    var word = 0u;
    for (var i = 0u; i < 4u; i++) {
      let d = w * 4u + i;
      if (d < p.hd) {
        let c = i32(clamp(round(vals[d] * inv), -qmax, qmax));
        word |= (bitcast<u32>(c) & 0xffu) << (8u * i);
      }
    }
    if (p.transpose == 0u) {
      codes[(bh * p.nb * 64u + pos) * dp4 + w] = word;
    } else {
      rows[lid * dp4 + w] = word;
    }
  }
  if (p.transpose != 0u) {
    workgroupBarrier();
    let vbase = (bh * p.nb + blk) * p.hd * 16u;
    for (var e = lid; e < p.hd * 16u; e += 64u) {
      let d = e / 16u;
      let w = e % 16u;
      var word = 0u;
      for (var i = 0u; i < 4u; i++) {
        let byte = (rows[(w * 4u + i) * dp4 + d / 4u] >> (8u * (d % 4u))) & 0xffu;
        word |= byte << (8u * i);
      }
      codes[vbase + e] = word;
    }
  }
}
