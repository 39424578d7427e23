// Dense flash attention, register-tiled for GPUs (attention.wgsl is the one-row-per-thread
// version, kept for CPU adapters and head dims that are not a multiple of 4).
//
// A workgroup owns BQ = 4·RG query rows of one (batch, head) and walks the keys in blocks of
// BK = 4·TC·KH. Its RG·TC threads form an RG × TC grid; thread (ty, tx) owns query rows
// 4·ty .. 4·ty+3 (with QPT 2 or 4, RG/QPT × TC threads, also the row groups ty + RG/QPT, …, so
// every k and v vec4 it reads feeds QPT times the FMAs) and
//   - for S = q·kᵀ, keys tx + TC·j (j < 4·KH) of the block: a 4×4 tile (KH 2: two, sharing
//     the q reads) whose every q and k vec4 read from workgroup memory feeds 16 FMAs (vs 4 in
//     the row-per-thread kernel);
//   - for O += P·v, head-dim vec4s tx·CV .. tx·CV+CV−1: a 4×CV tile, fed by one vec4 of P
//     (4 rows of one key) and CV vec4s of v per key.
// Online softmax: the block's row max is reduced over the TC threads of a row through
// workgroup memory (all of them read the same partials in the same order, so they agree on
// m exactly); the row sum l is kept per thread over its own keys and reduced once, at the end.
// q (pre-scaled by scale·log2 e), k and v are staged as f32; k rows are padded by one vec4 so
// the TC threads reading different rows hit different banks, q row groups likewise (one vec4 a
// group of 4 rows, not a row: 16 row groups of 8 keys a thread then fit 48 KiB in f32 at d72).
// Masks and keys past Tk as in attention.wgsl: bias INVALID, probability exactly 0. The
// parts attention_chunked.wgsl shares are in attention_tiles.wgsl, which the host appends.
// The next block's k and v are fetched into registers (NPF vec4s each a thread) while this
// one is multiplied, hiding the loads' latency (8.8 → 7.7 ms at PixArt-α's d72 on an H200);
// shapes that would need more than 5 a thread stage each block directly instead.
override HD: u32 = 64u; // head dim, a multiple of 4, ≤ 128
override RG: u32 = 16u; // row groups: BQ = 4·RG query rows per workgroup
override TC: u32 = 8u;  // threads per row group: BK = 4·TC keys per block, HD/4 = TC·CV
// Row groups a thread owns: 1, 2 or 4 (ty, ty + TG, …: each k vec4 read for S and each v vec4
// for P·v then feeds 4·QPT query rows instead of 4; 4 on CPU adapters at head dim 64).
override QPT: u32 = 1u;

override D4: u32 = HD / 4u;
override D4P: u32 = D4 + 1u; // padded row stride of staged k (vec4s)
override QR: u32 = D4; // row stride of staged q within a row group
override QG: u32 = 4u * D4 + 1u; // and of its row groups (padded)
override BQ: u32 = 4u * RG;
// Key halves a thread owns in S: 1 (keys tx + TC·c, c < 4) or 2 (also tx + TC·(4 + c)): with
// 2 each staged q vec4 a thread reads feeds 8 keys instead of 4.
override KH: u32 = 1u;
override BK: u32 = 4u * TC * KH;
override TG: u32 = RG / QPT; // thread rows
override WG: u32 = TG * TC;
override KSZ: u32 = BK * D4P; // vec4s of ks: BK·max(D4P, RG), k rows and then P
// CV (head-dim vec4s per thread in P·v) is fixed by the host, which also writes out the
// output tile's 4·CV accumulators as named variables at the //@ markers: GPU compilers keep
// named variables in registers, while a private array indexed in a loop may be spilled to
// local memory (the first version of this kernel ran at a third of the speed it should).

// H4 (vec4<f32>, or vec4<f16> with shape.half: f16 operands staged as they are, P rounded to
// f16, every read converted back to f32 for the arithmetic) is fixed by the host, like CV.
var<workgroup> qs: array<H4, RG * QG>; // the query rows (attention_tiles.wgsl)
var<workgroup> red: array<vec4<f32>, RG * TC>; // per-thread partials of 4 rows (max, then sum)
var<workgroup> ks: array<H4, KSZ>; // k rows, then (after S) P as [key][row group]
var<workgroup> vs: array<H4, BK * D4>;

// One of this thread's NPF vec4s (i) of the k (which 1) or v (which 2) rows of the block at
// k0; `base` is the head's first element in batch b, `row` the operand's row stride.
// Threads past the block's end load a duplicate that put_kv() never stores.
fn fetch_kv(lid: u32, i: u32, k0: u32, base: u32, row: u32, which: u32) -> vec4<f32> {
  let j = min(lid + i * WG, BK * D4 - 1u);
  let key = min(k0 + j / D4, p.tk - 1u); // keys past Tk get p = 0 below
  return ld4(base + key * row + (j % D4) * 4u, which);
}

// Stores a fetched k and v vec4 into the staged block.
fn put_kv(lid: u32, i: u32, xk: vec4<f32>, xv: vec4<f32>) {
  let j = lid + i * WG;
  if (j < BK * D4) {
    ks[(j / D4) * D4P + j % D4] = H4(xk);
    vs[j] = H4(xv);
  }
}

// QPT > 1: the scores of the thread's QPT row groups against its 4 keys, each staged k vec4
// read once for all of them (tile_scores_n and its result struct, written by the host).
//@SCORES_FN

// P of row group g for keys key0 + TC·c into the k buffer as [key][row group]: one vec4 = the
// 4 rows of one key.
fn store_p(pr: Tile4, g: u32, key0: u32) {
  ks[key0 * RG + g] = H4(key_column(pr, 0u));
  ks[(key0 + TC) * RG + g] = H4(key_column(pr, 1u));
  ks[(key0 + 2u * TC) * RG + g] = H4(key_column(pr, 2u));
  ks[(key0 + 3u * TC) * RG + g] = H4(key_column(pr, 3u));
}

// KH 2: the thread's 4 rows against its keys tx + TC·c (a) and tx + TC·(4 + c) (b).
struct Tile8 {
  a: Tile4,
  b: Tile4,
}

// KH 2: the scores of the thread's rows (q rows at qo) against its 8 keys, each q vec4 read
// once for both halves.
fn tile_scores8(qo: u32, kr0: u32) -> Tile8 {
  var a = Tile4();
  var c = Tile4();
  let kh = 4u * TC * D4P; // the second half's first key row
  for (var d = 0u; d < D4; d++) {
    let k0 = vec4<f32>(ks[kr0 + d]);
    let k1 = vec4<f32>(ks[kr0 + TC * D4P + d]);
    let k2 = vec4<f32>(ks[kr0 + 2u * TC * D4P + d]);
    let k3 = vec4<f32>(ks[kr0 + 3u * TC * D4P + d]);
    let k4 = vec4<f32>(ks[kr0 + kh + d]);
    let k5 = vec4<f32>(ks[kr0 + kh + TC * D4P + d]);
    let k6 = vec4<f32>(ks[kr0 + kh + 2u * TC * D4P + d]);
    let k7 = vec4<f32>(ks[kr0 + kh + 3u * TC * D4P + d]);
    let q = q_rows(qo + d);
    a = add_rows(a, q, k0, k1, k2, k3);
    c = add_rows(c, q, k4, k5, k6, k7);
  }
  return Tile8(a, c);
}

// KH 2: online_softmax (attention_tiles.wgsl) over the thread's 8 keys, one row max for both;
// b, k0, mode, ty, tx, m, l and al as there.
fn online_softmax8(s: Tile8, b: u32, k0: u32, mode: u32, ty: u32, tx: u32,
                   m: ptr<function, vec4<f32>>, l: ptr<function, vec4<f32>>,
                   al: ptr<function, vec4<f32>>) -> Tile8 {
  let ta = biased(s.a, block_bias(b, k0, tx, mode));
  let tb = biased(s.b, block_bias(b, k0 + 4u * TC, tx, mode));
  let both = Tile4(max(ta.r0, tb.r0), max(ta.r1, tb.r1), max(ta.r2, tb.r2), max(ta.r3, tb.r3));
  let mn = running_max(both, ty, tx, m, al);
  let pa = tile_probs(ta, mn);
  let pb = tile_probs(tb, mn);
  *l = *l * *al + row_sums(pa) + row_sums(pb);
  return Tile8(pa, pb);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let b = wid.z;
  let h = wid.y;
  let row0 = wid.x * BQ;
  let ty = lid / TC; // row group ty (and ty + TG, … with QPT > 1)
  let tx = lid % TC;
  let kbase = b * p.k_batch + p.k_off + h * HD;
  let vbase = b * p.v_batch + p.v_off + h * HD;

  let mode = mask_mode(b, lid);
  stage_q(b, h, row0, lid);

  //@PF_DECL
  //@O_DECL
  //@STATE
  let kr0 = tx * D4P;

  for (var k0 = 0u; k0 < p.tk; k0 += BK) {
    workgroupBarrier(); // the previous block's P and v are no longer read
    //@STAGE
    workgroupBarrier();
    //@PF_NEXT

    //@SCORES
    workgroupBarrier();

    //@O_SCALE
    let vc = tx * CV;
    for (var j = 0u; j < BK; j++) {
      let vj = j * D4 + vc;
      //@O_ACC
    }
  }

  let ob = b * p.o_batch + h * HD + tx * CV * 4u;
  //@O_STORE
}
