// PARO block-sparse attention on INT8/INT4 codes (see attn_sparse_quant.wgsl for the
// layouts). A workgroup owns ROWS = WG·RPT query positions of one 64-position query
// block of one (batch, head), in the head's reordered order; it walks the set bits of the
// block's mask row, so a masked key block costs nothing: no loads, no math, no softmax
// update. Per kept key block: the K codes (64 × DP4 words) and the transposed V codes
// (HD × 16 words) are staged in workgroup memory; each thread owns RPT rows:
//   s_j = (Σ dot4(q, k_j)) · sq·sk·scale·log2e           (integer dot, f32 scale)
//   m' = max(m, max_j s_j); α = exp2(m − m')
//   P codes: round(exp2(s_j − m')·127), sp = 1/127        (INT8, fixed scale)
//         or round(exp2(s_j − bmax)·qp), sp = exp2(bmax − m')/qp   (pblock: per block)
//   l = l·α + sp·Σ codes;  o_d = o_d·α + sp·sv·Σ_j dot4(P codes, V codes of channel d)
// m and l stay f32. The output row is written to its raster token (perm[h, pos]): the
// inverse reordering is fused into the write, so the output projection reads it as is.
// Keys past T get the score INVALID and a code of 0.
// GPUs compile the head dim in (HD), so every loop has a constant trip count and the
// private arrays are indexed statically. On CPU adapters (HD = 0) the head dim and the
// 64-key loop bound come from the params: LLVM would otherwise unroll every loop, and a
// pipeline would take 10+ s to compile for no gain there.
override HD: u32 = 64u;     // head dim; 0: p.hd at run time (CPU adapters, see below)
override DP4: u32 = 16u;    // u32 words per q/k code row = 4·D16 (with HD = 0: 32)
override WG: u32 = 64u;     // threads per workgroup
override RPT: u32 = 1u;     // query rows per thread (≤ RMAX)

override D16: u32 = DP4 / 4u; // vec4 slots per staged K row
override HDS: u32 = select(HD, 128u, HD == 0u); // channels of staged V
const RMAX: u32 = 4u;
const D4MAX: u32 = 32u;
const D16MAX: u32 = 8u;
const INVALID: f32 = -1.0e30;

struct Params {
  t: u32, nb: u32, mw: u32, heads: u32,
  m_off: u32, m_head: u32, o_off: u32, o_row: u32,
  o_batch: u32, s_stride: u32, scale_log2: f32, subs: u32,
  hd: u32, keys: u32, pblock: u32, qp: f32,  // pblock 1: P scaled per block; qp: P's top code
}

// The bindings (p, qc, kc, vt, sc, masks, perm, out) and dot16: attn_sparse_io.wgsl.
var<workgroup> ks: array<vec4<u32>, 64u * D16>;
var<workgroup> vs: array<vec4<u32>, HDS * 4u>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let qb = wid.x / p.subs;
  let row0 = qb * 64u + (wid.x % p.subs) * (WG * RPT) + lid;
  let h = wid.y;
  let b = wid.z;
  let bh = b * p.heads + h;
  let hd = select(HD, p.hd, HD == 0u);       // constants unless HD = 0
  let d16 = select(D16, (p.hd + 15u) / 16u, HD == 0u);
  let nk = select(64u, p.keys, HD == 0u);    // keys per block (p.keys = 64)
  let cbase = bh * p.nb * 64u * d16;   // q/k code rows of this (b, h), in vec4 units
  let vbase = bh * p.nb * hd * 4u;
  let sbase = bh * p.nb * 2u;
  let sq = sc[sbase + qb * 2u];

  var q: array<vec4<u32>, RMAX * D16MAX>;
  var o: array<vec4<f32>, RMAX * D4MAX>;
  var m: array<f32, RMAX>;
  var l: array<f32, RMAX>;
  for (var r = 0u; r < RPT; r++) {
    let row = min(row0 + r * WG, p.t - 1u);
    for (var c = 0u; c < d16; c++) { q[r * D16MAX + c] = qc[cbase + row * d16 + c]; }
    for (var c = 0u; c < hd / 4u; c++) { o[r * D4MAX + c] = vec4<f32>(0.0); }
    m[r] = -3.0e38;
    l[r] = 0.0;
  }

  let mrow = h * p.m_head + p.m_off + qb * p.mw;
  for (var w = 0u; w < p.mw; w++) {
    var bits = masks[mrow + w];
    while (bits != 0u) {
      let kb = w * 32u + firstTrailingBit(bits);
      bits &= bits - 1u;
      workgroupBarrier(); // the previous block is no longer read
      for (var j = lid; j < 64u * d16; j += WG) { ks[j] = kc[cbase + kb * 64u * d16 + j]; }
      for (var j = lid; j < hd * 4u; j += WG) { vs[j] = vt[vbase + kb * hd * 4u + j]; }
      workgroupBarrier();
      let fac = sq * sc[p.s_stride + sbase + kb * 2u] * p.scale_log2;
      let sv = sc[2u * p.s_stride + sbase + kb * 2u];
      let live = min(64u, p.t - kb * 64u); // keys of this block that exist

      // Scores of the 64 keys for every row: each K vec4 feeds RPT integer dots.
      var s: array<f32, RMAX * 64u>;
      for (var j = 0u; j < nk; j++) {
        var acc: array<i32, RMAX>;
        for (var r = 0u; r < RPT; r++) { acc[r] = 0; }
        for (var c = 0u; c < d16; c++) {
          let kv = ks[j * d16 + c];
          for (var r = 0u; r < RPT; r++) { acc[r] += dot16(q[r * D16MAX + c], kv); }
        }
        for (var r = 0u; r < RPT; r++) {
          s[r * 64u + j] = select(INVALID, f32(acc[r]) * fac, j < live);
        }
      }
      // Online softmax and P codes, 4 keys per word.
      var pw: array<u32, RMAX * 16u>;
      var f: array<f32, RMAX>;
      var al: array<f32, RMAX>;
      for (var r = 0u; r < RPT; r++) {
        var bmax = INVALID;
        for (var j = 0u; j < nk; j++) { bmax = max(bmax, s[r * 64u + j]); }
        let mn = max(m[r], bmax);
        al[r] = exp2(m[r] - mn);
        var refm = mn;
        var sp = 1.0 / 127.0;
        if (p.pblock != 0u) {
          refm = bmax;
          sp = exp2(bmax - mn) / p.qp;
        }
        var psum = 0u;
        for (var w4 = 0u; w4 < nk / 4u; w4++) {
          var word = 0u;
          for (var i = 0u; i < 4u; i++) {
            let c = u32(round(exp2(s[r * 64u + w4 * 4u + i] - refm) * p.qp));
            psum += c;
            word |= c << (8u * i);
          }
          pw[r * 16u + w4] = word;
        }
        l[r] = l[r] * al[r] + sp * f32(psum);
        m[r] = mn;
        f[r] = sp * sv;
      }
      // o = o·α + sp·sv·P·V, four channels at a time.
      for (var c = 0u; c < hd / 4u; c++) {
        var acc: array<vec4<i32>, RMAX>;
        for (var r = 0u; r < RPT; r++) { acc[r] = vec4<i32>(0); }
        for (var i = 0u; i < 4u; i++) {
          let d = c * 4u + i;
          for (var e = 0u; e < nk / 16u; e++) {
            let vv = vs[d * 4u + e];
            for (var r = 0u; r < RPT; r++) {
              let pv = vec4<u32>(
                pw[r * 16u + e * 4u],
                pw[r * 16u + e * 4u + 1u],
                pw[r * 16u + e * 4u + 2u],
                pw[r * 16u + e * 4u + 3u],
              );
              acc[r][i] += dot16(pv, vv);
            }
          }
        }
        for (var r = 0u; r < RPT; r++) {
          o[r * D4MAX + c] = o[r * D4MAX + c] * al[r] + f[r] * vec4<f32>(acc[r]);
        }
      }
    }
  }

  for (var r = 0u; r < RPT; r++) {
    let row = row0 + r * WG;
    if (row >= p.t) { continue; }
    let tok = perm[h * p.t + row];
    let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
    let ob = b * p.o_batch + tok * p.o_row + p.o_off + h * hd;
    for (var c = 0u; c < hd / 4u; c++) {
      let y = o[r * D4MAX + c] * inv;
      for (var i = 0u; i < 4u; i++) { out[ob + c * 4u + i] = DT(y[i]); }
    }
  }
}
