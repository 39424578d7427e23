// Dense flash attention, register-tiled for GPUs (attention.wgsl is the one-row-per-thread
// version, kept for CPU adapters and head dims that are not a multiple of 4).
//
// A workgroup owns BQ = 4·RG query rows of one (batch, head) and walks the keys in blocks of
// BK = 4·TC. Its RG·TC threads form an RG × TC grid; thread (ty, tx) owns query rows
// 4·ty .. 4·ty+3 and
//   - for S = q·kᵀ, keys tx + TC·j (j < 4) of the block: a 4×4 tile whose every q and k vec4
//     read from workgroup memory feeds 16 FMAs (vs 4 in the row-per-thread kernel);
//   - for O += P·v, head-dim vec4s tx·CV .. tx·CV+CV−1: a 4×CV tile, fed by one vec4 of P
//     (4 rows of one key) and CV vec4s of v per key.
// Online softmax: the block's row max is reduced over the TC threads of a row through
// workgroup memory (all of them read the same partials in the same order, so they agree on
// m exactly); the row sum l is kept per thread over its own keys and reduced once, at the end.
// q (pre-scaled by scale·log2 e), k and v are staged as f32; k and q rows are padded by one
// vec4 so the TC threads reading different rows hit different banks.
// Masks and keys past Tk as in attention.wgsl: bias INVALID, probability exactly 0.
override HD: u32 = 64u; // head dim, a multiple of 4, ≤ 128
override RG: u32 = 16u; // row groups: BQ = 4·RG query rows per workgroup
override TC: u32 = 8u;  // threads per row group: BK = 4·TC keys per block, HD/4 = TC·CV

override D4: u32 = HD / 4u;
override D4P: u32 = D4 + 1u; // padded row stride of staged q and k (vec4s)
override BQ: u32 = 4u * RG;
override BK: u32 = 4u * TC;
override WG: u32 = RG * TC;
override KSZ: u32 = BK * D4P; // vec4s of ks: BK·max(D4P, RG), k rows and then P
// CV (head-dim vec4s per thread in P·v) is a `const` prepended by the host: the sizes of
// private arrays must be constant expressions, and overrides are not.

const INVALID: f32 = -1.0e30;
const LIVE: f32 = -1.0e29; // scores above this come from valid keys

struct Params {
  tq: u32, tk: u32, mask_mode: u32, m_batch: u32,   // mask_mode: 0 none, 1 bias, 2 drop
  q_off: u32, q_row: u32, q_batch: u32, o_row: u32,
  k_off: u32, k_row: u32, k_batch: u32, o_batch: u32,
  v_off: u32, v_row: u32, v_batch: u32, scale_log2: f32,
  hd: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<DT>;
@group(0) @binding(2) var<storage, read> k: array<DT>;
@group(0) @binding(3) var<storage, read> v: array<DT>;
@group(0) @binding(4) var<storage, read> mask: array<DT>;
@group(0) @binding(5) var<storage, read_write> out: array<DT>;

var<workgroup> qs: array<vec4<f32>, BQ * D4P>;
var<workgroup> ks: array<vec4<f32>, KSZ>; // k rows, then (after S) P as [key][row group]
var<workgroup> vs: array<vec4<f32>, BK * D4>;
var<workgroup> red: array<f32, BQ * TC>;       // per-thread row partials (max, then sum)
var<workgroup> keep_any: atomic<u32>;

fn ld4(buf_at: u32, which: u32) -> vec4<f32> {
  if (which == 0u) {
    return vec4<f32>(f32(q[buf_at]), f32(q[buf_at + 1u]), f32(q[buf_at + 2u]), f32(q[buf_at + 3u]));
  }
  if (which == 1u) {
    return vec4<f32>(f32(k[buf_at]), f32(k[buf_at + 1u]), f32(k[buf_at + 2u]), f32(k[buf_at + 3u]));
  }
  return vec4<f32>(f32(v[buf_at]), f32(v[buf_at + 1u]), f32(v[buf_at + 2u]), f32(v[buf_at + 3u]));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let row0 = wid.x * BQ;
  let ty = lid / TC;
  let tx = lid % TC;
  let kbase = b * p.k_batch + p.k_off + h * HD;
  let vbase = b * p.v_batch + p.v_off + h * HD;

  // Mask mode 1 (additive -10000): drop masked keys if the batch keeps any, else ignore it.
  var mode = p.mask_mode;
  if (mode == 1u) {
    if (lid == 0u) { atomicStore(&keep_any, 0u); }
    workgroupBarrier();
    for (var j = lid; j < p.tk; j += WG) {
      if (f32(mask[b * p.m_batch + j]) != 0.0) { atomicStore(&keep_any, 1u); }
    }
    workgroupBarrier();
    mode = select(0u, 2u, atomicLoad(&keep_any) != 0u);
  }

  for (var j = lid; j < BQ * D4; j += WG) {
    let row = min(row0 + j / D4, p.tq - 1u);
    let at = b * p.q_batch + row * p.q_row + p.q_off + h * HD + (j % D4) * 4u;
    qs[(j / D4) * D4P + j % D4] = ld4(at, 0u) * p.scale_log2;
  }

  var o: array<vec4<f32>, 4u * CV>;
  var m: vec4<f32> = vec4<f32>(-3.0e38);
  var l: vec4<f32> = vec4<f32>(0.0); // this thread's keys only
  for (var i = 0u; i < 4u * CV; i++) { o[i] = vec4<f32>(0.0); }

  for (var k0 = 0u; k0 < p.tk; k0 += BK) {
    workgroupBarrier(); // the previous block's P and v are no longer read
    for (var j = lid; j < BK * D4; j += WG) {
      let at = min(k0 + j / D4, p.tk - 1u); // keys past Tk get p = 0 below
      ks[(j / D4) * D4P + j % D4] = ld4(kbase + at * p.k_row + (j % D4) * 4u, 1u);
      vs[j] = ld4(vbase + at * p.v_row + (j % D4) * 4u, 2u);
    }
    workgroupBarrier();

    // s[r][c]: row 4·ty + r, key tx + TC·c.
    var s: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r++) { s[r] = vec4<f32>(0.0); }
    for (var d = 0u; d < D4; d++) {
      let k0v = ks[(tx) * D4P + d];
      let k1v = ks[(tx + TC) * D4P + d];
      let k2v = ks[(tx + 2u * TC) * D4P + d];
      let k3v = ks[(tx + 3u * TC) * D4P + d];
      for (var r = 0u; r < 4u; r++) {
        let qv = qs[(4u * ty + r) * D4P + d];
        s[r] += vec4<f32>(dot(qv, k0v), dot(qv, k1v), dot(qv, k2v), dot(qv, k3v));
      }
    }
    var bias: vec4<f32>;
    for (var c = 0u; c < 4u; c++) {
      let key = k0 + tx + TC * c;
      var bad = key >= p.tk;
      if (mode == 2u && !bad) { bad = f32(mask[b * p.m_batch + key]) == 0.0; }
      bias[c] = select(0.0, INVALID, bad);
    }
    var pmax: vec4<f32>;
    for (var r = 0u; r < 4u; r++) {
      s[r] += bias;
      pmax[r] = max(max(s[r].x, s[r].y), max(s[r].z, s[r].w));
      red[(4u * ty + r) * TC + tx] = pmax[r];
    }
    workgroupBarrier(); // partial maxima written; every k row has been read
    var mn = m;
    for (var t = 0u; t < TC; t++) {
      for (var r = 0u; r < 4u; r++) { mn[r] = max(mn[r], red[(4u * ty + r) * TC + t]); }
    }
    let al = exp2(m - mn);
    m = mn;
    // P into the k buffer as [key][row group] vec4s (4 rows of one key).
    var pc: array<vec4<f32>, 4>; // pc[c]: rows 0..3 of key c
    for (var r = 0u; r < 4u; r++) {
      let pr = select(vec4<f32>(0.0), exp2(s[r] - mn[r]), s[r] > vec4<f32>(LIVE));
      l[r] = l[r] * al[r] + (pr.x + pr.y) + (pr.z + pr.w);
      for (var c = 0u; c < 4u; c++) { pc[c][r] = pr[c]; }
    }
    for (var c = 0u; c < 4u; c++) { ks[(tx + TC * c) * RG + ty] = pc[c]; }
    workgroupBarrier();

    for (var i = 0u; i < 4u * CV; i++) { o[i] *= al[i / CV]; }
    for (var j = 0u; j < BK; j++) {
      let pj = ks[j * RG + ty];
      for (var c = 0u; c < CV; c++) {
        let vv = vs[j * D4 + tx * CV + c];
        o[c] += pj.x * vv;
        o[CV + c] += pj.y * vv;
        o[2u * CV + c] += pj.z * vv;
        o[3u * CV + c] += pj.w * vv;
      }
    }
  }

  // Row sums: reduce the TC partials of each row.
  workgroupBarrier();
  for (var r = 0u; r < 4u; r++) { red[(4u * ty + r) * TC + tx] = l[r]; }
  workgroupBarrier();
  var lt = vec4<f32>(0.0);
  for (var t = 0u; t < TC; t++) {
    for (var r = 0u; r < 4u; r++) { lt[r] += red[(4u * ty + r) * TC + t]; }
  }
  for (var r = 0u; r < 4u; r++) {
    let row = row0 + 4u * ty + r;
    if (row >= p.tq) { continue; }
    let inv = select(0.0, 1.0 / lt[r], lt[r] > 0.0);
    let ob = b * p.o_batch + row * p.o_row + h * HD + tx * CV * 4u;
    for (var c = 0u; c < CV; c++) {
      let y = o[r * CV + c] * inv;
      for (var i = 0u; i < 4u; i++) { out[ob + c * 4u + i] = DT(y[i]); }
    }
  }
}
