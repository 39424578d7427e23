// Dense flash attention (online softmax, never materialising Tq×Tk).
//
// One workgroup = WG·RPT query rows of one (batch, head). Each thread owns RPT query
// rows: their scaled q and output accumulators o live in private arrays, so the softmax
// statistics (m, l) need no cross-thread reduction. Keys are consumed in groups of 8:
// 8 scores per row, one max/rescale per group, then o = o·α + Σ p·v. Each K/V vec4 that
// is read feeds 4·RPT FMAs. That step (attention_rows_step.wgsl, with the thread's state) is
// shared with PARO's float kernel.
//
// Keys/values stream through workgroup memory in blocks of BK tokens, converted to f32
// once per block, and are read back as broadcast vec4 loads. GPUs use RPT = 1 so the
// private arrays fit in registers, and compile the head dim in (HD) so that every loop
// over its vec4s (d4), RPT and the 8 keys has a constant trip count: the compiler can
// unroll them and index the private arrays statically. CPU adapters (where every
// workgroup load costs tens of cycles per lane and private arrays are cheap) use RPT = 8
// (RMAX raised to 8 by runtime/ops/attention.ts for them)
// and HD = 0, the head dim read from the params: one pipeline serves every head dim, as
// compiling one takes seconds there.
//
// Scores are in log2 units (q is pre-multiplied by scale·log2 e) so exp is exp2.
// Keys past Tk and masked keys get the bias INVALID and a probability of exactly 0.
// mask_mode 1 (diffusers' additive -10000): masked keys are dropped when the batch keeps
// any key, and the mask is ignored when it keeps none — exactly what exp(-10000) = 0
// gives, without f32 rounding at 10000. mask_mode 2 drops masked keys; a row with no
// valid key ends with l = 0 and writes zeros.
override HD: u32 = 64u;  // head dim (≤ 128); 0: p.hd at run time (one pipeline for all)
override BK: u32 = 64u;  // keys per block (a multiple of 8, ≤ 64)
override WG: u32 = 64u;  // threads per workgroup
override RPT: u32 = 1u;  // query rows per thread (≤ RMAX)
override D4S: u32 = (HD + 3u) / 4u; // vec4 slots per staged K/V row (32 when HD = 0)

const D4MAX: u32 = 32u;
const RMAX: u32 = 4u;

var<workgroup> ks: array<vec4<f32>, BK * D4S>;
var<workgroup> vs: array<vec4<f32>, BK * D4S>;
var<workgroup> kb: array<vec4<f32>, BK / 4u>; // per-key bias: 0 or INVALID

// Elements c·4 .. c·4+3 of the K (or V) row at element offset `at`, zero past hd. The
// read past hd stays in the buffer (index clamping) and is discarded by the select.
fn k4(at: u32, c: u32, hd: u32) -> vec4<f32> {
  var t: vec4<f32>;
  for (var i = 0u; i < 4u; i++) { t[i] = select(0.0, f32(k[at + c * 4u + i]), c * 4u + i < hd); }
  return t;
}

fn v4(at: u32, c: u32, hd: u32) -> vec4<f32> {
  var t: vec4<f32>;
  for (var i = 0u; i < 4u; i++) { t[i] = select(0.0, f32(v[at + c * 4u + i]), c * 4u + i < hd); }
  return t;
}

// Biases of keys key..key+3: INVALID past Tk or when masked (mode 2), else 0.
fn bias4(b: u32, key: u32, mode: u32) -> vec4<f32> {
  var t: vec4<f32>;
  for (var i = 0u; i < 4u; i++) {
    let kk = key + i;
    var bad = kk >= p.tk;
    if (mode == 2u && !bad) { bad = f32(mask[b * p.m_batch + kk]) == 0.0; }
    t[i] = select(0.0, INVALID, bad);
  }
  return t;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let row0 = wid.x * WG * RPT + lid;
  let hd = select(HD, p.hd, HD == 0u); // a constant unless HD = 0
  let d4 = (hd + 3u) / 4u;
  let kbase = b * p.k_batch + p.k_off + h * hd;
  let vbase = b * p.v_batch + p.v_off + h * hd;
  var mode = p.mask_mode;
  if (mode == 1u) {
    // Additive -10000: drop masked keys if any key is kept, else ignore the mask.
    mode = 0u;
    for (var j = 0u; j < p.tk; j++) {
      if (f32(mask[b * p.m_batch + j]) != 0.0) {
        mode = 2u;
        break;
      }
    }
  }

  var qr: array<vec4<f32>, RMAX * D4MAX>;
  var o: array<vec4<f32>, RMAX * D4MAX>;
  var m: array<f32, RMAX>;
  var l: array<f32, RMAX>;
  for (var r = 0u; r < RPT; r++) {
    let row = min(row0 + r * WG, p.tq - 1u);
    let qb = b * p.q_batch + row * p.q_row + p.q_off + h * hd;
    for (var c = 0u; c < d4; c++) {
      var t: vec4<f32>;
      for (var i = 0u; i < 4u; i++) {
        t[i] = select(0.0, f32(q[qb + c * 4u + i]), c * 4u + i < hd);
      }
      qr[r * D4MAX + c] = t * p.scale_log2;
      o[r * D4MAX + c] = vec4<f32>(0.0);
    }
    m[r] = -3.0e38;
    l[r] = 0.0;
  }

  for (var k0 = 0u; k0 < p.tk; k0 += BK) {
    workgroupBarrier(); // the previous block is no longer read
    for (var j = lid; j < BK * d4; j += WG) {
      let at = min(k0 + j / d4, p.tk - 1u); // rows past Tk get p = 0 through kb
      ks[j] = k4(kbase + at * p.k_row, j % d4, hd);
      vs[j] = v4(vbase + at * p.v_row, j % d4, hd);
    }
    for (var j = lid; j < BK / 4u; j += WG) { kb[j] = bias4(b, k0 + j * 4u, mode); }
    workgroupBarrier();

    for (var j = 0u; j < BK; j += 8u) {
      let ba = kb[j / 4u];
      let bb = kb[j / 4u + 1u];
      //@rows_step8
    }
  }

  for (var r = 0u; r < RPT; r++) {
    let row = row0 + r * WG;
    if (row >= p.tq) { continue; }
    let inv = select(0.0, 1.0 / l[r], l[r] > 0.0);
    let ob = b * p.o_batch + row * p.o_row + h * hd;
    for (var c = 0u; c < d4; c++) {
      let y = o[r * D4MAX + c] * inv;
      for (var i = 0u; i < 4u; i++) {
        if (c * 4u + i < hd) { out[ob + c * 4u + i] = DT(y[i]); }
      }
    }
  }
}
