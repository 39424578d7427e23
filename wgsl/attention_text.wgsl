// Attention of the text encoders (T5, CLIP): out = softmax(scale·q·kᵀ + bias)·v per (batch,
// head), with what the DiTs' attention kernel has no place for: a bias that depends on the
// query row as well as the key (T5's relative position bias, CLIP's causal mask).
//
// One thread = one query row, one workgroup = WG rows of one (batch, head); keys and values
// stream through workgroup memory in blocks of BK tokens and the softmax is online (m, l
// per row). Text is short (≤ 512 tokens) and this is a small part of an encoder's time, so the
// kernel stays simple: f32, one key at a time.
//
// flags: 1 key mask (mask[b, j] == 0 drops key j), 2 causal (keys after the row are
// dropped), 4 relative bias (rel[bucket[j − i + Tq − 1] · H + h] is added to the score).
// Dropped keys get probability exactly 0, as torch's finfo.min (T5) and −inf (CLIP) give;
// a row with no key left writes zeros.
override WG: u32 = 64u;
override BK: u32 = 8u;

const D4MAX: u32 = 32u; // head dim ≤ 128

struct Params { tq: u32, tk: u32, heads: u32, hd: u32, width: u32, flags: u32, scale: f32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> mask: array<f32>;
@group(0) @binding(5) var<storage, read> rel: array<f32>;
@group(0) @binding(6) var<storage, read> bucket: array<u32>;
@group(0) @binding(7) var<storage, read_write> out: array<f32>;

var<workgroup> ks: array<vec4<f32>, BK * D4MAX>;
var<workgroup> vs: array<vec4<f32>, BK * D4MAX>;

// Elements 4c .. 4c+3 of the head starting at `at`, zero past the head dim.
fn load4(which: u32, at: u32, c: u32) -> vec4<f32> {
  var t = vec4<f32>(0.0);
  for (var i = 0u; i < 4u; i++) {
    if (c * 4u + i < p.hd) {
      let j = at + c * 4u + i;
      if (which == 0u) { t[i] = q[j]; } else if (which == 1u) { t[i] = k[j]; } else { t[i] = v[j]; }
    }
  }
  return t;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let i = wid.x * WG + lid;
  let row = min(i, p.tq - 1u); // rows past Tq compute row Tq − 1 and write nothing
  let d4 = (p.hd + 3u) / 4u;
  var qv: array<vec4<f32>, D4MAX>;
  var o: array<vec4<f32>, D4MAX>;
  let qb = (b * p.tq + row) * p.width + h * p.hd;
  for (var c = 0u; c < d4; c++) {
    qv[c] = load4(0u, qb, c) * p.scale;
    o[c] = vec4<f32>(0.0);
  }
  var m = -3.0e38;
  var l = 0.0;
  for (var k0 = 0u; k0 < p.tk; k0 += BK) {
    workgroupBarrier(); // the previous block is no longer read
    for (var j = lid; j < BK * d4; j += WG) {
      let key = min(k0 + j / d4, p.tk - 1u); // keys past Tk are never read below
      let at = (b * p.tk + key) * p.width + h * p.hd;
      ks[(j / d4) * D4MAX + j % d4] = load4(1u, at, j % d4);
      vs[(j / d4) * D4MAX + j % d4] = load4(2u, at, j % d4);
    }
    workgroupBarrier();
    for (var jj = 0u; jj < BK; jj++) {
      let j = k0 + jj;
      if (j >= p.tk) { break; }
      if ((p.flags & 1u) != 0u && mask[b * p.tk + j] == 0.0) { continue; }
      if ((p.flags & 2u) != 0u && j > row) { continue; }
      var s = 0.0;
      for (var c = 0u; c < d4; c++) { s += dot(qv[c], ks[jj * D4MAX + c]); }
      if ((p.flags & 4u) != 0u) { s += rel[bucket[j + p.tq - 1u - row] * p.heads + h]; }
      let mn = max(m, s);
      let a = exp(m - mn);
      let e = exp(s - mn);
      l = l * a + e;
      for (var c = 0u; c < d4; c++) { o[c] = o[c] * a + e * vs[jj * D4MAX + c]; }
      m = mn;
    }
  }
  if (i >= p.tq) { return; }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let ob = (b * p.tq + i) * p.width + h * p.hd;
  for (var c = 0u; c < d4; c++) {
    let y = o[c] * inv;
    for (var t = 0u; t < 4u; t++) {
      if (c * 4u + t < p.hd) { out[ob + c * 4u + t] = y[t]; }
    }
  }
}
