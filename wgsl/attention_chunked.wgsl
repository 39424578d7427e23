// Dense flash attention for large head dims (FLUX's and SD3's 128), register-tiled like
// attention_tiled.wgsl but staging k and v in head-dim chunks through one shared buffer:
// at head dim 128 the unchunked kernel fits 48 KiB of workgroup memory only as 32 threads
// (3 TFLOP/s on an H200; this kernel, 10).
//
// A workgroup owns BQ = 4·RG query rows of one (batch, head) and walks the keys in blocks of
// BK = 4·TC. Each chunk of k or v is fetched into registers (NPF vec4s a thread) while the
// previous one is multiplied, so the loads' latency hides behind the arithmetic. Thread
// (ty, tx) owns query rows 4·ty .. 4·ty+3 and
//   - for S = q·kᵀ, keys tx + TC·j (j < 4) of the block, summed over the NCH chunks of CH
//     head-dim vec4s, each chunk of k staged in turn;
//   - for O += P·v, in every chunk c the head-dim vec4s c·CH + tx·CVC .. + CVC − 1, each
//     chunk of v staged in turn; P (4 rows of one key per vec4) stays in its own buffer.
// Online softmax, masks and keys past Tk as in attention_tiled.wgsl; the shared parts are
// in attention_tiles.wgsl, which the host appends.
override HD: u32 = 128u; // head dim, a multiple of 4·NCH, ≤ 256
override RG: u32 = 8u;   // row groups: BQ = 4·RG query rows per workgroup
override TC: u32 = 16u;  // threads per row group: BK = 4·TC keys per block
override NCH: u32 = 2u;  // head-dim chunks k and v are staged in; CH = HD/4/NCH = TC·CVC

override D4: u32 = HD / 4u;
override QR: u32 = D4 + 1u; // padded row stride of staged q (vec4s): one vec4 a row
override QG: u32 = 4u * QR; // and of its row groups
override CH: u32 = D4 / NCH;
override CHP: u32 = CH + 1u; // padded row stride of a staged k or v chunk
override BQ: u32 = 4u * RG;
override BK: u32 = 4u * TC;
override WG: u32 = RG * TC;
// CVC (head-dim vec4s per thread and chunk) is fixed by the host, which also writes the
// output tile's 4·NCH·CVC accumulators as named variables at the //@ markers (registers;
// see attention_tiled.wgsl).

var<workgroup> qs: array<H4, RG * QG>;      // the query rows (attention_tiles.wgsl)
var<workgroup> red: array<vec4<f32>, RG * TC>; // per-thread partials of 4 rows (max, then sum)
var<workgroup> ks: array<vec4<f32>, BK * CHP>; // one chunk of k rows, then of v rows
var<workgroup> ps: array<vec4<f32>, BK * RG>;  // P as [key][row group]

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
  if (j < BK * CH) { ks[(j / CH) * CHP + j % CH] = x; }
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

  let mode = mask_mode(b, lid);
  stage_q(b, h, row0, lid);

  //@PF_DECL
  //@O_DECL
  var m = vec4<f32>(-3.0e38); // running max of rows 4·ty .. 4·ty+3
  var l = vec4<f32>(0.0);     // their sums over this thread's keys only
  let q0 = ty * QG;
  let kr0 = tx * CHP;

  for (var k0 = 0u; k0 < p.tk; k0 += BK) {
    // Row 4·ty + r against keys tx + TC·c (component c), over every chunk.
    var sc = Tile4();
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
      sc = tile_scores(sc, q0 + c * CH, kr0, CHP, CH);
    }
    var al: vec4<f32>;
    let pr = online_softmax(sc, b, k0, mode, ty, tx, &m, &l, &al);
    ps[tx * RG + ty] = key_column(pr, 0u);
    ps[(tx + TC) * RG + ty] = key_column(pr, 1u);
    ps[(tx + 2u * TC) * RG + ty] = key_column(pr, 2u);
    ps[(tx + 3u * TC) * RG + ty] = key_column(pr, 3u);

    //@O_SCALE
    let vc = tx * CVC;
    // Per chunk: a barrier, store the fetched v chunk, a barrier, fetch the next chunk (v's
    // next, or the next block's first k chunk), accumulate (see chunkedSource).
    //@PV
  }

  let inv = row_inv(l, ty, tx);
  let ob = b * p.o_batch + h * HD;
  //@O_STORE
}
