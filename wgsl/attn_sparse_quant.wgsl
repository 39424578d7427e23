// PARO quantize-to-blocks: reorders one of q/k/v [B, T, ·] per head by the head's
// permutation (the reordering is fused here, where the attention operands are written)
// and quantizes each block of 64 positions × hd channels symmetrically with one scale:
// code = clamp(round((x − mean)·inv), ±qmax), inv = qmax / absmax, scale = absmax / qmax.
//
// Q/K codes: u32 [B, H, nb·64, DP4], byte i of word w = channel 4w + i. V (transpose = 1)
// is written per block channel-major, u32 [B, H, nb, hd, 16], byte i of word w = position
// 4w + i, so P·V is a dot product of packed bytes along the keys.
// Scales: f32 [B, H, nb, 2] at s_off = (scale, inv). Positions past T get zero codes.
// qmax (127 INT8, 7 INT4) and the V layout are params: one pipeline serves q, k and v.
//
// One workgroup of 256 threads per (block, head, batch); each thread owns NJ = DP/16 code
// words (the block has 64·DP/4 Q/K words) and keeps their 4 values in named vec4s a0..a7
// (a loop-indexed private array would live in local memory on GPUs). Word e of thread lid
// is lid + j·256, so consecutive threads read consecutive channels of one token row:
// - Q/K: e = row·DP4 + word, the word's 4 channels of that row (padding words are zero);
//   codes are written at e, one linear store per word.
// - V: e = w·hd + d (e < 16·hd), channel d of rows 4w..4w+3; the words go through
//   workgroup memory (stride 17: no bank conflicts) so the channel-major store is linear.
// The block's absmax is reduced in 3 barriers (256 → 32 → 1), not a 9-barrier tree: each
// barrier costs a full pass over the workgroup on CPU adapters.
override NJ: u32 = 4u;        // code words per thread = DP / 16 (1..8)

const WG: u32 = 256u;
const VS: u32 = 17u;          // tw's row stride (16 words + 1 against bank conflicts)

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

var<workgroup> red: array<f32, WG>;
var<workgroup> red2: array<f32, 33>;      // 32 partial maxima, then the block's
var<workgroup> tw: array<u32, 128u * VS>;  // V words by channel, before the linear store

// One value: x at raster token `tok` and channel d of head h, minus the mean, 0 past T.
fn val(tok: u32, xb: u32, mb: u32, d: u32, ok: bool) -> f32 {
  var v = f32(x[xb + tok * p.x_row + d]);
  if (p.use_mean != 0u) { v = v - mean[mb + d]; }
  return select(0.0, v, ok);
}

// The raster token at row r of block blk of head h (the last one past T).
fn tokof(h: u32, blk: u32, r: u32) -> u32 { return perm[h * p.t + min(blk * 64u + r, p.t - 1u)]; }

// The 4 values of word j of thread lid (zeros for padding and past the block's words).
fn load(j: u32, lid: u32, blk: u32, h: u32, xb: u32, mb: u32) -> vec4<f32> {
  let e = lid + j * WG;
  if (p.transpose == 0u) {
    let r = e / p.dp4;
    let d = (e % p.dp4) * 4u;
    let ok = blk * 64u + r < p.t && d < p.hd;
    let tok = tokof(h, blk, r);
    let dd = min(d, p.hd - 4u);
    return vec4(val(tok, xb, mb, dd, ok), val(tok, xb, mb, dd + 1u, ok),
      val(tok, xb, mb, dd + 2u, ok), val(tok, xb, mb, dd + 3u, ok));
  }
  let ok = e < 16u * p.hd;
  let r = min(e / p.hd, 15u) * 4u;
  let d = e % p.hd;
  let p0 = blk * 64u + r;
  return vec4(val(tokof(h, blk, r), xb, mb, d, ok && p0 < p.t),
    val(tokof(h, blk, r + 1u), xb, mb, d, ok && p0 + 1u < p.t),
    val(tokof(h, blk, r + 2u), xb, mb, d, ok && p0 + 2u < p.t),
    val(tokof(h, blk, r + 3u), xb, mb, d, ok && p0 + 3u < p.t));
}

fn amax4(a: vec4<f32>) -> f32 {
  let m = abs(a);
  return max(max(m.x, m.y), max(m.z, m.w));
}

// Quantizes 4 values and packs their low bytes (component i → byte i).
fn pack(a: vec4<f32>, inv: f32) -> u32 {
  let c = bitcast<vec4<u32>>(vec4<i32>(clamp(round(a * inv), vec4(-p.qmax), vec4(p.qmax))));
  let b = c & vec4(0xffu);
  return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

// Stores word j of thread lid: Q/K straight to codes, V into tw.
fn store(j: u32, lid: u32, qk_base: u32, word: u32) {
  let e = lid + j * WG;
  if (p.transpose == 0u) {
    codes[qk_base + e] = word;
  } else if (e < 16u * p.hd) {
    tw[(e % p.hd) * VS + e / p.hd] = word;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let blk = wid.x;
  let h = wid.y;
  let b = wid.z;
  let bh = b * p.heads + h;
  let xb = b * p.x_batch + p.x_off + h * p.hd;
  let mb = bh * p.hd;
  // NJ is a pipeline constant: the untaken branches compile away.
  var a0 = vec4(0.0);
  var a1 = vec4(0.0);
  var a2 = vec4(0.0);
  var a3 = vec4(0.0);
  var a4 = vec4(0.0);
  var a5 = vec4(0.0);
  var a6 = vec4(0.0);
  var a7 = vec4(0.0);
  a0 = load(0u, lid, blk, h, xb, mb);
  if (NJ > 1u) { a1 = load(1u, lid, blk, h, xb, mb); }
  if (NJ > 2u) { a2 = load(2u, lid, blk, h, xb, mb); }
  if (NJ > 3u) { a3 = load(3u, lid, blk, h, xb, mb); }
  if (NJ > 4u) { a4 = load(4u, lid, blk, h, xb, mb); }
  if (NJ > 5u) { a5 = load(5u, lid, blk, h, xb, mb); }
  if (NJ > 6u) { a6 = load(6u, lid, blk, h, xb, mb); }
  if (NJ > 7u) { a7 = load(7u, lid, blk, h, xb, mb); }
  red[lid] = max(max(max(amax4(a0), amax4(a1)), max(amax4(a2), amax4(a3))),
    max(max(amax4(a4), amax4(a5)), max(amax4(a6), amax4(a7))));
  workgroupBarrier();
  if (lid < 32u) {
    var m = red[lid];
    for (var i = 1u; i < WG / 32u; i++) { m = max(m, red[lid + 32u * i]); }
    red2[lid] = m;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var m = red2[0];
    for (var i = 1u; i < 32u; i++) { m = max(m, red2[i]); }
    red2[32] = m;
  }
  workgroupBarrier();
  let bmax = red2[32];
  let inv = select(0.0, p.qmax / bmax, bmax > 0.0);
  if (lid == 0u) {
    let si = p.s_off + (bh * p.nb + blk) * 2u;
    scales[si] = bmax / p.qmax;
    scales[si + 1u] = inv;
  }
  let qk_base = (bh * p.nb + blk) * 64u * p.dp4;
  store(0u, lid, qk_base, pack(a0, inv));
  if (NJ > 1u) { store(1u, lid, qk_base, pack(a1, inv)); }
  if (NJ > 2u) { store(2u, lid, qk_base, pack(a2, inv)); }
  if (NJ > 3u) { store(3u, lid, qk_base, pack(a3, inv)); }
  if (NJ > 4u) { store(4u, lid, qk_base, pack(a4, inv)); }
  if (NJ > 5u) { store(5u, lid, qk_base, pack(a5, inv)); }
  if (NJ > 6u) { store(6u, lid, qk_base, pack(a6, inv)); }
  if (NJ > 7u) { store(7u, lid, qk_base, pack(a7, inv)); }
  if (p.transpose != 0u) {
    workgroupBarrier();
    let vbase = (bh * p.nb + blk) * p.hd * 16u;
    for (var e = lid; e < p.hd * 16u; e += WG) { codes[vbase + e] = tw[(e / 16u) * VS + e % 16u]; }
  }
}
