// PARO block-sparse attention on INT8/INT4 codes, register-tiled for GPUs (attn_sparse.wgsl
// is the one-row-per-workgroup-thread version, kept for CPU adapters; same inputs, same
// outputs, same algorithm, see its header and runtime/reference/attn_sparse.ts).
//
// A workgroup owns the 64 query positions of one query block of one (batch, head) and walks
// the set bits of the block's mask row (a masked key block costs nothing). Its 256 threads
// form a 16 × 16 grid; thread (ty, tx) owns query rows 4·ty .. 4·ty+3 and
//   - for S = q·kᵀ, keys 4·tx .. 4·tx+3 of the block: a 4×4 tile of integer dots whose every
//     q and k vec4 read from workgroup memory feeds 4 dot4I8Packed (16 per row/key pair);
//     4 consecutive keys per thread, so each row's 4 P codes pack into one word, P word tx;
//   - for O += P·V, channels tx + 16·c (c < NC): a 4 × NC tile of integer dots of P words
//     with transposed V words (NC = ⌈HD/16⌉; with HD = 72 the threads tx < 8 own 5 channels,
//     the others 4 and a clamped, unstored fifth).
// Online softmax in f32: the block row max is reduced over the 16 threads of a row through
// workgroup memory (exact, so every thread of a row gets the same m and the same P codes);
// l is kept per thread over its own keys and reduced once, at the end.
// The output tile's accumulators are named variables written out by the host at the //@
// markers (runtime/ops/attn_sparse_tiled.ts): GPU compilers keep those in registers, while a
// private array indexed in a loop may go to local memory. No private arrays here.
// K rows are staged with key 4·t + c at slot 16·c + t (row stride D16P vec4s, odd), so the
// 16 threads of a row group read 16 consecutive slots; V channel rows are padded to 5 vec4s.
// After the scores, the K buffer holds P as [row group][16 words] vec4s of its 4 rows.
// The next kept block's K and V codes are fetched into registers while this one is
// multiplied, hiding the loads' latency.
override HD: u32 = 64u;   // head dim (multiple of 4, ≤ 128)
override D16: u32 = 4u;   // vec4s per Q/K code row (HD padded to 16, / 16)
override D16P: u32 = 5u;  // staged K row stride in vec4s (odd: no bank conflicts)
override KSZ: u32 = 320u; // vec4s of ks: max(64·D16P, 256)

const VST: u32 = 5u; // staged V channel row stride in vec4s (4 + 1 pad)
const INVALID: f32 = -1.0e30;

struct Params {
  t: u32, nb: u32, mw: u32, heads: u32,
  m_off: u32, m_head: u32, o_row: u32, o_batch: u32,
  s_stride: u32, pblock: u32, scale_log2: f32, qp: f32,  // pblock 1: P scaled per block
}

// The bindings (p, qc, kc, vt, sc, masks, perm, out) and dot16: attn_sparse_io.wgsl.
var<workgroup> qs: array<vec4<u32>, 64u * D16>;
var<workgroup> ks: array<vec4<u32>, KSZ>; // K rows (permuted slots), then P
var<workgroup> vs: array<vec4<u32>, HD * VST>;
var<workgroup> red: array<vec4<f32>, 256u>; // per-thread partials of 4 rows (max, then sum)

fn hmax(a: vec4<f32>) -> f32 {
  return max(max(a.x, a.y), max(a.z, a.w));
}

const NONE: u32 = 0xffffffffu;

// The next kept key block of mask row `mrow` from the state (word *w, its unseen bits
// *bits), or NONE past the last.
fn next_block(mrow: u32, w: ptr<function, u32>, bits: ptr<function, u32>) -> u32 {
  while (*bits == 0u) {
    *w += 1u;
    if (*w >= p.mw) { return NONE; }
    *bits = masks[mrow + *w];
  }
  let kb = *w * 32u + firstTrailingBit(*bits);
  *bits &= *bits - 1u;
  return kb;
}

// This thread's i-th K (which 0: 64·D16 vec4s) or V (which 1: HD·4) vec4 of key block kb,
// fetched ahead of its staging; threads past the end repeat the last, which put_kv skips.
fn fetch_kv(kb: u32, i: u32, lid: u32, which: u32, cbase: u32, vbase: u32) -> vec4<u32> {
  if (which == 0u) { return kc[cbase + kb * 64u * D16 + min(lid + 256u * i, 64u * D16 - 1u)]; }
  return vt[vbase + kb * HD * 4u + min(lid + 256u * i, HD * 4u - 1u)];
}

// Stages a fetched vec4: K rows in their permuted slots, V channel rows padded to VST.
fn put_kv(i: u32, lid: u32, which: u32, x: vec4<u32>) {
  let j = lid + 256u * i;
  if (which == 0u) {
    if (j < 64u * D16) {
      let key = j / D16;
      ks[((key & 3u) * 16u + (key >> 2u)) * D16P + j % D16] = x;
    }
  } else if (j < HD * 4u) {
    vs[(j >> 2u) * VST + (j & 3u)] = x;
  }
}

// Four P codes (keys of one row) as one word, and their sum in .y.
fn pack_codes(s: vec4<f32>, refm: f32) -> vec2<u32> {
  let c = vec4<u32>(round(exp2(s - refm) * p.qp));
  return vec2<u32>(c.x | (c.y << 8u) | (c.z << 16u) | (c.w << 24u), (c.x + c.y) + (c.z + c.w));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let qb = wid.x;
  let h = wid.y;
  let b = wid.z;
  let bh = b * p.heads + h;
  let ty = lid / 16u;
  let tx = lid % 16u;
  let cbase = bh * p.nb * 64u * D16; // q/k code rows of this (b, h), in vec4s
  let vbase = bh * p.nb * HD * 4u;
  let sbase = bh * p.nb * 2u;
  let sq = sc[sbase + qb * 2u];

  // Q codes of the block, once (positions past T have zero codes).
  for (var j = lid; j < 64u * D16; j += 256u) { qs[j] = qc[cbase + qb * 64u * D16 + j]; }

  //@O_DECL
  //@VD_DECL
  var m = vec4<f32>(-3.0e38); // running max of rows 4·ty .. 4·ty+3
  var l = vec4<f32>(0.0);     // their sums over this thread's keys only
  let qr = 4u * ty * D16;
  let kr = tx * D16P;
  let pr = 16u * ty; // first P vec4 of row group ty
  let key0 = vec4<u32>(0u, 1u, 2u, 3u) + 4u * tx;

  let mrow = h * p.m_head + p.m_off + qb * p.mw;
  var w = 0u;
  var bits = masks[mrow];
  var kb = next_block(mrow, &w, &bits);
  //@PF_DECL
  while (kb != NONE) {
    let nkb = next_block(mrow, &w, &bits);
    let fb = select(nkb, kb, nkb == NONE); // what to fetch ahead (a repeat after the last)
    workgroupBarrier(); // the previous block's P and V are no longer read
    //@PF_PUT
    workgroupBarrier();
    //@PF_NEXT
    let fac = sq * sc[p.s_stride + sbase + kb * 2u] * p.scale_log2;
    let sv = sc[2u * p.s_stride + sbase + kb * 2u];
    let live = key0 < vec4<u32>(p.t - kb * 64u); // keys of this block that exist

    // s_r: row 4·ty + r against keys 4·tx + c (component c).
    var s0 = vec4<i32>(0);
    var s1 = vec4<i32>(0);
    var s2 = vec4<i32>(0);
    var s3 = vec4<i32>(0);
    for (var d = 0u; d < D16; d++) {
      let ka = ks[kr + d];
      let kb1 = ks[kr + 16u * D16P + d];
      let kc2 = ks[kr + 32u * D16P + d];
      let kd3 = ks[kr + 48u * D16P + d];
      let qa = qs[qr + d];
      let qb1 = qs[qr + D16 + d];
      let qc2 = qs[qr + 2u * D16 + d];
      let qd3 = qs[qr + 3u * D16 + d];
      s0 += vec4<i32>(dot16(qa, ka), dot16(qa, kb1), dot16(qa, kc2), dot16(qa, kd3));
      s1 += vec4<i32>(dot16(qb1, ka), dot16(qb1, kb1), dot16(qb1, kc2), dot16(qb1, kd3));
      s2 += vec4<i32>(dot16(qc2, ka), dot16(qc2, kb1), dot16(qc2, kc2), dot16(qc2, kd3));
      s3 += vec4<i32>(dot16(qd3, ka), dot16(qd3, kb1), dot16(qd3, kc2), dot16(qd3, kd3));
    }
    let bad = vec4<f32>(INVALID);
    let f0 = select(bad, vec4<f32>(s0) * fac, live);
    let f1 = select(bad, vec4<f32>(s1) * fac, live);
    let f2 = select(bad, vec4<f32>(s2) * fac, live);
    let f3 = select(bad, vec4<f32>(s3) * fac, live);
    red[lid] = vec4<f32>(hmax(f0), hmax(f1), hmax(f2), hmax(f3));
    workgroupBarrier(); // partial maxima written; every K row has been read
    var bmax = red[16u * ty];
    for (var t = 1u; t < 16u; t++) { bmax = max(bmax, red[16u * ty + t]); }
    let mn = max(m, bmax);
    let al = exp2(m - mn);
    m = mn;
    var refm = mn;
    var sp = vec4<f32>(1.0 / 127.0);
    if (p.pblock != 0u) {
      refm = bmax;
      sp = exp2(bmax - mn) / p.qp;
    }
    let c0 = pack_codes(f0, refm.x);
    let c1 = pack_codes(f1, refm.y);
    let c2 = pack_codes(f2, refm.z);
    let c3 = pack_codes(f3, refm.w);
    l = l * al + sp * vec4<f32>(vec4<u32>(c0.y, c1.y, c2.y, c3.y));
    // P word tx (keys 4·tx ..) of rows 4·ty .. 4·ty+3, one vec4, into the K buffer (its
    // reads are done): P is stored [row group][word][row].
    ks[pr + tx] = vec4<u32>(c0.x, c1.x, c2.x, c3.x);
    let fr = sp * sv;
    workgroupBarrier();

    // O += P·V: integer dots over the 64 keys, 16 at a time, then o = o·α + sp·sv·acc.
    //@A_DECL
    for (var e = 0u; e < 4u; e++) {
      // Words 4e .. 4e+3 of the 4 rows (a 4×4 transpose in registers).
      let w0 = ks[pr + 4u * e];
      let w1 = ks[pr + 4u * e + 1u];
      let w2 = ks[pr + 4u * e + 2u];
      let w3 = ks[pr + 4u * e + 3u];
      let p0 = vec4<u32>(w0.x, w1.x, w2.x, w3.x);
      let p1 = vec4<u32>(w0.y, w1.y, w2.y, w3.y);
      let p2 = vec4<u32>(w0.z, w1.z, w2.z, w3.z);
      let p3 = vec4<u32>(w0.w, w1.w, w2.w, w3.w);
      //@PV_ACC
    }
    //@O_UPDATE
    kb = nkb;
  }

  // Row sums: reduce the 16 partials of each row.
  workgroupBarrier();
  red[lid] = l;
  workgroupBarrier();
  var lt = vec4<f32>(0.0);
  for (var t = 0u; t < 16u; t++) { lt += red[16u * ty + t]; }
  let linv = select(vec4<f32>(0.0), 1.0 / lt, lt > vec4<f32>(0.0));
  //@O_STORE
}

// One output value, unless the channel is past HD (the clamped slot of a partial tile).
fn store_out(row_at: u32, d: u32, y: f32) {
  if (d < HD) { out[row_at + d] = DT(y); }
}
