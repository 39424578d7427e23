// PARO block-sparse attention in float (sparsity without quantization): the same walk
// over the set bits of each query block's mask row as attn_sparse.wgsl, on f32/f16 q, k,
// v read in raster order [B, T, ·] and gathered through the head's permutation (query
// rows and staged key rows alike), so no reordered copy is made; the output row goes to
// its raster token. Within a kept 64-key block, keys stream through workgroup memory in
// sub-blocks of BK and are consumed 8 at a time with an online softmax in f32 (base 2:
// q is pre-multiplied by scale·log2 e): the dense kernel's step, attention_rows_step.wgsl.
// HD = 0 reads the head dim from the params (CPU adapters: one pipeline for all, and no
// unrolling that would make it take seconds to compile).
override HD: u32 = 64u;  // head dim (a multiple of 4, ≤ 128); 0: p.hd
override BK: u32 = 32u;  // keys per staged sub-block (a multiple of 8 dividing 64)
override WG: u32 = 64u;  // threads per workgroup
override RPT: u32 = 1u;  // query rows per thread (≤ RMAX)

override D4: u32 = select(HD / 4u, 32u, HD == 0u); // vec4 slots per staged row
const D4MAX: u32 = 32u;
const RMAX: u32 = 4u;
const INVALID: f32 = -1.0e30;
const LIVE: f32 = -1.0e29;

struct Params {
  t: u32, nb: u32, mw: u32, heads: u32,
  m_off: u32, m_head: u32, subs: u32, scale_log2: f32,
  q_off: u32, q_row: u32, q_batch: u32, o_off: u32,
  k_off: u32, k_row: u32, k_batch: u32, o_row: u32,
  v_off: u32, v_row: u32, v_batch: u32, o_batch: u32,
  hd: u32, pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<DT>;
@group(0) @binding(2) var<storage, read> k: array<DT>;
@group(0) @binding(3) var<storage, read> v: array<DT>;
@group(0) @binding(4) var<storage, read> masks: array<u32>;
@group(0) @binding(5) var<storage, read> perm: array<u32>;
@group(0) @binding(6) var<storage, read_write> out: array<DT>;

var<workgroup> ks: array<vec4<f32>, BK * D4>;
var<workgroup> vs: array<vec4<f32>, BK * D4>;
var<workgroup> kb4: array<vec4<f32>, BK / 4u>; // 0 or INVALID per key

fn hmax(a: vec4<f32>) -> f32 {
  return max(max(a.x, a.y), max(a.z, a.w));
}

fn hsum(a: vec4<f32>) -> f32 {
  return (a.x + a.y) + (a.z + a.w);
}

fn ld4(buf: u32, at: u32) -> vec4<f32> {
  if (buf == 0u) { return vec4<f32>(f32(k[at]), f32(k[at + 1u]), f32(k[at + 2u]), f32(k[at + 3u])); }
  return vec4<f32>(f32(v[at]), f32(v[at + 1u]), f32(v[at + 2u]), f32(v[at + 3u]));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let qb = wid.x / p.subs;
  let row0 = qb * 64u + (wid.x % p.subs) * (WG * RPT) + lid;
  let h = wid.y;
  let b = wid.z;
  let pb = h * p.t;
  let hd = select(HD, p.hd, HD == 0u); // a constant unless HD = 0
  let d4 = hd / 4u;
  let kbase = b * p.k_batch + p.k_off + h * hd;
  let vbase = b * p.v_batch + p.v_off + h * hd;

  var qr: array<vec4<f32>, RMAX * D4MAX>;
  var o: array<vec4<f32>, RMAX * D4MAX>;
  var m: array<f32, RMAX>;
  var l: array<f32, RMAX>;
  for (var r = 0u; r < RPT; r++) {
    let tok = perm[pb + min(row0 + r * WG, p.t - 1u)];
    let qa = b * p.q_batch + tok * p.q_row + p.q_off + h * hd;
    for (var c = 0u; c < d4; c++) {
      let t = vec4<f32>(
        f32(q[qa + c * 4u]), f32(q[qa + c * 4u + 1u]), f32(q[qa + c * 4u + 2u]), f32(q[qa + c * 4u + 3u]),
      );
      qr[r * D4MAX + c] = t * p.scale_log2;
      o[r * D4MAX + c] = vec4<f32>(0.0);
    }
    m[r] = -3.0e38;
    l[r] = 0.0;
  }

  let mrow = h * p.m_head + p.m_off + qb * p.mw;
  for (var w = 0u; w < p.mw; w++) {
    var bits = masks[mrow + w];
    while (bits != 0u) {
      let kb = w * 32u + firstTrailingBit(bits);
      bits &= bits - 1u;
      for (var k0 = kb * 64u; k0 < kb * 64u + 64u; k0 += BK) {
        workgroupBarrier(); // the previous sub-block is no longer read
        for (var j = lid; j < BK * d4; j += WG) {
          let tok = perm[pb + min(k0 + j / d4, p.t - 1u)];
          ks[j] = ld4(0u, kbase + tok * p.k_row + (j % d4) * 4u);
          vs[j] = ld4(1u, vbase + tok * p.v_row + (j % d4) * 4u);
        }
        for (var j = lid; j < BK / 4u; j += WG) {
          let key = k0 + j * 4u;
          kb4[j] = select(vec4<f32>(0.0), vec4<f32>(INVALID), vec4<u32>(key, key + 1u, key + 2u, key + 3u) >= vec4<u32>(p.t));
        }
        workgroupBarrier();

        for (var j = 0u; j < BK; j += 8u) {
          let ba = kb4[j / 4u];
          let bb = kb4[j / 4u + 1u];
          //@rows_step8
        }
      }
    }
  }

  for (var r = 0u; r < RPT; r++) {
    let row = row0 + r * WG;
    if (row >= p.t) { continue; }
    let tok = perm[pb + row];
    let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
    let ob = b * p.o_batch + tok * p.o_row + p.o_off + h * hd;
    for (var c = 0u; c < d4; c++) {
      let y = o[r * D4MAX + c] * inv;
      for (var i = 0u; i < 4u; i++) { out[ob + c * 4u + i] = DT(y[i]); }
    }
  }
}
