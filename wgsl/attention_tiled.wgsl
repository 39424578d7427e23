// Dense flash attention, register-tiled for GPUs (attention.wgsl is the one-row-per-thread
// version, kept for CPU adapters and head dims that are not a multiple of 4).
//
// A workgroup owns BQ = 4·QU·RG query rows of one (batch, head) and walks the keys in blocks
// of BK = 4·TC. Its RG·TC threads form an RG × TC grid; thread (ty, tx) owns QU quads of 4
// query rows (quad u: rows 4·(QU·ty + u) .. +3) and
//   - for S = q·kᵀ, keys tx + TC·j (j < 4) of the block: a 4·QU × 4 tile whose every k vec4
//     read from workgroup memory feeds 4·QU·4 FMAs and every q vec4 16;
//   - for O += P·v, head-dim vec4s tx·CV .. tx·CV+CV−1: a 4·QU × CV tile, fed by QU vec4s
//     of P (4 rows of one key each) and CV vec4s of v per key.
// Online softmax: the block's row max is reduced over the TC threads of a row through
// workgroup memory (all of them read the same partials in the same order, so they agree on
// m exactly); the row sum l is kept per thread over its own keys and reduced once, at the end.
// A row's arithmetic does not depend on QU: every QU gives the same outputs.
// q (pre-scaled by scale·log2 e), k and v are staged as f32; k and q rows are padded by one
// vec4 so the TC threads reading different rows hit different banks.
// Masks and keys past Tk as in attention.wgsl: bias INVALID, probability exactly 0.
override HD: u32 = 64u; // head dim, a multiple of 4, ≤ 128
override RG: u32 = 16u; // row groups: BQ = 4·RG query rows per workgroup
override TC: u32 = 8u;  // threads per row group: BK = 4·TC keys per block, HD/4 = TC·CV

override D4: u32 = HD / 4u;
override D4P: u32 = D4 + 1u; // padded row stride of staged q and k (vec4s)
override BQ: u32 = 4u * QU * RG;
override BK: u32 = 4u * TC;
override WG: u32 = RG * TC;
override RQ: u32 = RG * QU; // quads of rows in the workgroup: P's row stride (vec4s)
override KSZ: u32 = BK * D4P; // vec4s of ks: BK·max(D4P, RQ), k rows and then P
// CV (head-dim vec4s per thread in P·v) and QU (quads of rows per thread) are fixed by the
// host, which also writes out the per-quad scores and statistics and the output tile's
// 4·QU·CV accumulators as named variables at the //@ markers: GPU compilers keep named
// variables in registers, while a private array indexed in a loop may be spilled to local
// memory (the first version of this kernel ran at a third of the speed it should).

var<workgroup> qs: array<vec4<f32>, BQ * D4P>;
var<workgroup> ks: array<vec4<f32>, KSZ>; // k rows, then (after S) P as [key][row group]
var<workgroup> vs: array<vec4<f32>, BK * D4>;
var<workgroup> red: array<vec4<f32>, RG * TC * QU>; // per-thread partials of each quad (max, then sum)
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

// Bias of one key: INVALID past Tk or when masked (mode 2), else 0.
fn key_bias(b: u32, key: u32, mode: u32) -> f32 {
  var bad = key >= p.tk;
  if (mode == 2u && !bad) { bad = f32(mask[b * p.m_batch + key]) == 0.0; }
  return select(0.0, INVALID, bad);
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

  //@O_DECL
  //@ML_DECL
  let kr0 = tx * D4P;

  for (var k0 = 0u; k0 < p.tk; k0 += BK) {
    workgroupBarrier(); // the previous block's P and v are no longer read
    for (var j = lid; j < BK * D4; j += WG) {
      let at = min(k0 + j / D4, p.tk - 1u); // keys past Tk get p = 0 below
      ks[(j / D4) * D4P + j % D4] = ld4(kbase + at * p.k_row + (j % D4) * 4u, 1u);
      vs[j] = ld4(vbase + at * p.v_row + (j % D4) * 4u, 2u);
    }
    workgroupBarrier();

    // s{u}_r: row 4·(QU·ty + u) + r against keys tx + TC·c (component c).
    //@S_DECL
    for (var d = 0u; d < D4; d++) {
      let ka = ks[kr0 + d];
      let kb = ks[kr0 + TC * D4P + d];
      let kc = ks[kr0 + 2u * TC * D4P + d];
      let kd = ks[kr0 + 3u * TC * D4P + d];
      //@S_ACC
    }
    let bias = vec4<f32>(
      key_bias(b, k0 + tx, mode),
      key_bias(b, k0 + tx + TC, mode),
      key_bias(b, k0 + tx + 2u * TC, mode),
      key_bias(b, k0 + tx + 3u * TC, mode),
    );
    //@S_MAX
    workgroupBarrier(); // partial maxima written; every k row has been read
    // Each quad: the block's max, the rescale al, probabilities, sums; P into the k buffer
    // as [key][quad of the workgroup]: one vec4 = the 4 rows of one key.
    //@SOFTMAX
    workgroupBarrier();

    //@O_SCALE
    let vc = tx * CV;
    for (var j = 0u; j < BK; j++) {
      let pa = j * RQ + ty * QU;
      let vj = j * D4 + vc;
      //@O_ACC
    }
  }

  // Row sums: reduce the TC partials of each row.
  workgroupBarrier();
  //@L_STORE
  workgroupBarrier();
  //@L_REDUCE
  let ob = b * p.o_batch + h * HD + tx * CV * 4u;
  //@O_STORE
}

// One output row's CV vec4s (y = o·inv), unless the row is past Tq.
fn store_row(row: u32, at: u32, y: vec4<f32>) {
  if (row >= p.tq) { return; }
  out[at] = DT(y.x);
  out[at + 1u] = DT(y.y);
  out[at + 2u] = DT(y.z);
  out[at + 3u] = DT(y.w);
}
