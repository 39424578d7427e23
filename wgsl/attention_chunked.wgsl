// Dense flash attention for large head dims (FLUX's and SD3's 128), register-tiled like
// attention_tiled.wgsl but staging k and v in head-dim chunks through one shared buffer:
// at head dim 128 the unchunked kernel fits 48 KiB of workgroup memory only as 32 threads
// (3 TFLOP/s on an H200, against 10 at head dim 64).
//
// A workgroup owns BQ = 4·RG query rows of one (batch, head) and walks the keys in blocks of
// BK = 4·TC. Each chunk of k or v is fetched into registers (NPF vec4s a thread) while the
// previous one is multiplied, so the loads' latency hides behind the arithmetic. Thread (ty, tx) owns query rows 4·ty .. 4·ty+3 and
//   - for S = q·kᵀ, keys tx + TC·j (j < 4) of the block, summed over the NCH chunks of CH
//     head-dim vec4s, each chunk of k staged in turn;
//   - for O += P·v, in every chunk c the head-dim vec4s c·CH + tx·CVC .. + CVC − 1, each
//     chunk of v staged in turn; P (4 rows of one key per vec4) stays in its own buffer.
// Online softmax, masks and keys past Tk as in attention_tiled.wgsl.
override HD: u32 = 128u; // head dim, a multiple of 4·NCH, ≤ 256
override RG: u32 = 8u;   // row groups: BQ = 4·RG query rows per workgroup
override TC: u32 = 16u;  // threads per row group: BK = 4·TC keys per block
override NCH: u32 = 2u;  // head-dim chunks k and v are staged in; CH = HD/4/NCH = TC·CVC

override D4: u32 = HD / 4u;
override D4P: u32 = D4 + 1u; // padded row stride of staged q (vec4s)
override CH: u32 = D4 / NCH;
override CHP: u32 = CH + 1u; // padded row stride of a staged k or v chunk
override BQ: u32 = 4u * RG;
override BK: u32 = 4u * TC;
override WG: u32 = RG * TC;
// CVC (head-dim vec4s per thread and chunk) is fixed by the host, which also writes the
// output tile's 4·NCH·CVC accumulators as named variables at the //@ markers (registers;
// see attention_tiled.wgsl).

var<workgroup> qs: array<vec4<f32>, BQ * D4P>;
var<workgroup> kv: array<vec4<f32>, BK * CHP>; // one chunk of k rows, then of v rows
var<workgroup> ps: array<vec4<f32>, BK * RG>;  // P as [key][row group]
var<workgroup> red: array<vec4<f32>, RG * TC>; // per-thread partials of 4 rows (max, then sum)
var<workgroup> keep_any: atomic<u32>;

// One of this thread's NPF vec4s (i) of chunk c of k (which 1) or v (which 2) rows of the
// block at k0; `base` is the head's first element in batch b, `row` the operand's row
// stride. Threads past the chunk's end load a duplicate that put() never stores.
fn fetch(lid: u32, i: u32, k0: u32, c: u32, which: u32, base: u32, row: u32) -> vec4<f32> {
  let j = min(lid + i * WG, BK * CH - 1u);
  let key = min(k0 + j / CH, p.tk - 1u); // keys past Tk get p = 0
  return ld4(base + key * row + (c * CH + j % CH) * 4u, which);
}

// Stores a fetched vec4 into the staged chunk.
fn put(lid: u32, i: u32, x: vec4<f32>) {
  let j = lid + i * WG;
  if (j < BK * CH) { kv[(j / CH) * CHP + j % CH] = x; }
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

  //@PF_DECL
  //@O_DECL
  var m = vec4<f32>(-3.0e38); // running max of rows 4·ty .. 4·ty+3
  var l = vec4<f32>(0.0);     // their sums over this thread's keys only
  let q0 = (4u * ty) * D4P;
  let kr0 = tx * CHP;

  for (var k0 = 0u; k0 < p.tk; k0 += BK) {
    // s_r: row 4·ty + r against keys tx + TC·c (component c), over every chunk.
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    for (var c = 0u; c < NCH; c++) {
      workgroupBarrier(); // the previous chunk (or block's v) is no longer read
      //@PF_PUT
      workgroupBarrier();
      // Fetch the next chunk (k's next, or v's first) while this one is multiplied.
      let nk = c + 1u < NCH;
      let nc = select(0u, c + 1u, nk);
      let nw = select(2u, 1u, nk);
      let nbase = select(vbase, kbase, nk);
      let nrow = select(p.v_row, p.k_row, nk);
      //@PF_NEXT
      let qo = q0 + c * CH;
      for (var d = 0u; d < CH; d++) {
        let ka = kv[kr0 + d];
        let kb = kv[kr0 + TC * CHP + d];
        let kc = kv[kr0 + 2u * TC * CHP + d];
        let kd = kv[kr0 + 3u * TC * CHP + d];
        let qa = qs[qo + d];
        let qb = qs[qo + D4P + d];
        let qc = qs[qo + 2u * D4P + d];
        let qd = qs[qo + 3u * D4P + d];
        s0 += vec4<f32>(dot(qa, ka), dot(qa, kb), dot(qa, kc), dot(qa, kd));
        s1 += vec4<f32>(dot(qb, ka), dot(qb, kb), dot(qb, kc), dot(qb, kd));
        s2 += vec4<f32>(dot(qc, ka), dot(qc, kb), dot(qc, kc), dot(qc, kd));
        s3 += vec4<f32>(dot(qd, ka), dot(qd, kb), dot(qd, kc), dot(qd, kd));
      }
    }
    let bias = vec4<f32>(
      key_bias(b, k0 + tx, mode),
      key_bias(b, k0 + tx + TC, mode),
      key_bias(b, k0 + tx + 2u * TC, mode),
      key_bias(b, k0 + tx + 3u * TC, mode),
    );
    s0 += bias;
    s1 += bias;
    s2 += bias;
    s3 += bias;
    red[ty * TC + tx] = vec4<f32>(hmax(s0), hmax(s1), hmax(s2), hmax(s3));
    workgroupBarrier(); // partial maxima written; the last k chunk has been read
    var mn = m;
    for (var t = 0u; t < TC; t++) { mn = max(mn, red[ty * TC + t]); }
    let al = exp2(m - mn);
    m = mn;
    let p0 = select(vec4<f32>(0.0), exp2(s0 - mn.x), s0 > vec4<f32>(LIVE));
    let p1 = select(vec4<f32>(0.0), exp2(s1 - mn.y), s1 > vec4<f32>(LIVE));
    let p2 = select(vec4<f32>(0.0), exp2(s2 - mn.z), s2 > vec4<f32>(LIVE));
    let p3 = select(vec4<f32>(0.0), exp2(s3 - mn.w), s3 > vec4<f32>(LIVE));
    l = l * al + vec4<f32>(hsum(p0), hsum(p1), hsum(p2), hsum(p3));
    ps[tx * RG + ty] = vec4<f32>(p0.x, p1.x, p2.x, p3.x);
    ps[(tx + TC) * RG + ty] = vec4<f32>(p0.y, p1.y, p2.y, p3.y);
    ps[(tx + 2u * TC) * RG + ty] = vec4<f32>(p0.z, p1.z, p2.z, p3.z);
    ps[(tx + 3u * TC) * RG + ty] = vec4<f32>(p0.w, p1.w, p2.w, p3.w);

    //@O_SCALE
    let vc = tx * CVC;
    // Per chunk: a barrier, store the fetched v chunk, a barrier, fetch the next chunk (v's
    // next, or the next block's first k chunk), accumulate (see chunkedSource).
    //@PV
  }

  // Row sums: reduce the TC partials of each row.
  workgroupBarrier();
  red[ty * TC + tx] = l;
  workgroupBarrier();
  var lt = vec4<f32>(0.0);
  for (var t = 0u; t < TC; t++) { lt += red[ty * TC + t]; }
  let inv = select(vec4<f32>(0.0), 1.0 / lt, lt > vec4<f32>(0.0));
  let ob = b * p.o_batch + h * HD;
  //@O_STORE
}

// One output row's vec4 (y = o·inv) at element `at`, unless the row is past Tq.
fn store_row(row: u32, at: u32, y: vec4<f32>) {
  if (row >= p.tq) { return; }
  st4(at, y);
}
