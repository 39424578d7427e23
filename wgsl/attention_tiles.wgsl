// What the register-tiled attention kernels (attention_tiled.wgsl, attention_chunked.wgsl)
// share: thread (ty, tx) of an RG × TC grid owns query rows 4·ty .. 4·ty+3 of the BQ = 4·RG
// rows staged in qs (pre-scaled by scale·log2 e; row r at (r / 4)·QG + (r % 4)·QR, padded so
// the row groups a warp's threads read hit different banks); `red` holds per-thread partials
// of 4 rows. Each kernel declares the overrides HD, RG, TC, D4, QR, QG, BQ and WG this reads, the
// workgroup arrays qs and red, and H4, the vec4 type staged operands are kept in (vec4<f32>,
// or vec4<f16> where the tiled kernel stages f16 operands as they are: half the bytes a read);
// the host appends this file after the kernel (naga 29 panics on code that uses an override
// declared later in the module).

var<workgroup> keep_any: atomic<u32>;

// A thread's 4 query rows × 4 keys: r<i> is row 4·ty + i against keys tx + TC·c (component c).
struct Tile4 {
  r0: vec4<f32>,
  r1: vec4<f32>,
  r2: vec4<f32>,
  r3: vec4<f32>,
}

// s plus the scores over n head-dim vec4s: q rows from qs at qo (row stride QR), keys from
// the staged ks at kr0 (row stride ks_row; the thread's keys TC rows apart).
fn tile_scores(s: Tile4, qo: u32, kr0: u32, ks_row: u32, n: u32) -> Tile4 {
  var t = s;
  for (var d = 0u; d < n; d++) {
    let ka = vec4<f32>(ks[kr0 + d]);
    let kb = vec4<f32>(ks[kr0 + TC * ks_row + d]);
    let kc = vec4<f32>(ks[kr0 + 2u * TC * ks_row + d]);
    let kd = vec4<f32>(ks[kr0 + 3u * TC * ks_row + d]);
    t = add_rows(t, q_rows(qo + d), ka, kb, kc, kd);
  }
  return t;
}

// The 4 query rows' vec4s at q in qs (row stride QR), as a Tile4's rows.
fn q_rows(q: u32) -> Tile4 {
  return Tile4(vec4<f32>(qs[q]), vec4<f32>(qs[q + QR]), vec4<f32>(qs[q + 2u * QR]), vec4<f32>(qs[q + 3u * QR]));
}

// t plus 4 query rows' vec4s (q's rows) against 4 keys' vec4s.
fn add_rows(t: Tile4, q: Tile4, ka: vec4<f32>, kb: vec4<f32>, kc: vec4<f32>, kd: vec4<f32>) -> Tile4 {
  return Tile4(
    t.r0 + key_dots(q.r0, ka, kb, kc, kd),
    t.r1 + key_dots(q.r1, ka, kb, kc, kd),
    t.r2 + key_dots(q.r2, ka, kb, kc, kd),
    t.r3 + key_dots(q.r3, ka, kb, kc, kd),
  );
}

// One query row's vec4 against 4 keys' vec4s.
fn key_dots(q: vec4<f32>, ka: vec4<f32>, kb: vec4<f32>, kc: vec4<f32>, kd: vec4<f32>) -> vec4<f32> {
  return vec4<f32>(dot(q, ka), dot(q, kb), dot(q, kc), dot(q, kd));
}

// One block's online-softmax step for this thread's rows: the scores s of the block at k0
// get their keys' biases; the running max *m takes the block's (reduced over the TC threads
// of a row; a barrier inside, so every thread calls it after its last read of the staged k),
// *al the factor that rescales what was accumulated, *l this thread's partial sums. Returns
// the probabilities (exactly 0 for invalid keys).
fn online_softmax(
  s: Tile4,
  b: u32,
  k0: u32,
  mode: u32,
  ty: u32,
  tx: u32,
  m: ptr<function, vec4<f32>>,
  l: ptr<function, vec4<f32>>,
  al: ptr<function, vec4<f32>>,
) -> Tile4 {
  let t = biased(s, block_bias(b, k0, tx, mode));
  let mn = running_max(t, ty, tx, m, al);
  let pr = tile_probs(t, mn);
  *l = *l * *al + row_sums(pr);
  return pr;
}

// The new running row maxima *m (t's, reduced over the TC threads of a row, and the old),
// *al = exp2(old − new). A barrier inside (block_max).
fn running_max(t: Tile4, ty: u32, tx: u32, m: ptr<function, vec4<f32>>, al: ptr<function, vec4<f32>>) -> vec4<f32> {
  let mn = block_max(*m, t.r0, t.r1, t.r2, t.r3, ty, tx);
  *al = exp2(*m - mn);
  *m = mn;
  return mn;
}

// A tile's scores plus its 4 keys' biases.
fn biased(s: Tile4, bias: vec4<f32>) -> Tile4 {
  return Tile4(s.r0 + bias, s.r1 + bias, s.r2 + bias, s.r3 + bias);
}

// exp2(score − the row's max mn), exactly 0 for invalid keys.
fn tile_probs(t: Tile4, mn: vec4<f32>) -> Tile4 {
  return Tile4(
    select(vec4<f32>(0.0), exp2(t.r0 - mn.x), t.r0 > vec4<f32>(LIVE)),
    select(vec4<f32>(0.0), exp2(t.r1 - mn.y), t.r1 > vec4<f32>(LIVE)),
    select(vec4<f32>(0.0), exp2(t.r2 - mn.z), t.r2 > vec4<f32>(LIVE)),
    select(vec4<f32>(0.0), exp2(t.r3 - mn.w), t.r3 > vec4<f32>(LIVE)),
  );
}

// Each of the 4 rows' sum over the tile's 4 keys.
fn row_sums(p: Tile4) -> vec4<f32> {
  return vec4<f32>(hsum(p.r0), hsum(p.r1), hsum(p.r2), hsum(p.r3));
}

// Key c's column of a tile: its probabilities for the thread's 4 rows, as P is staged.
fn key_column(t: Tile4, c: u32) -> vec4<f32> {
  return vec4<f32>(t.r0[c], t.r1[c], t.r2[c], t.r3[c]);
}

// The mask mode of batch b: mode 1 (diffusers' additive -10000) drops masked keys if the
// batch keeps any (then mode 2), else ignores the mask (mode 0). Every thread calls it.
fn mask_mode(b: u32, lid: u32) -> u32 {
  if (p.mask_mode != 1u) { return p.mask_mode; }
  if (lid == 0u) { atomicStore(&keep_any, 0u); }
  workgroupBarrier();
  for (var j = lid; j < p.tk; j += WG) {
    if (f32(mask[b * p.m_batch + j]) != 0.0) { atomicStore(&keep_any, 1u); }
  }
  workgroupBarrier();
  return select(0u, 2u, atomicLoad(&keep_any) != 0u);
}

// Bias of one key: INVALID past Tk or when masked (mode 2), else 0.
fn key_bias(b: u32, key: u32, mode: u32) -> f32 {
  var bad = key >= p.tk;
  if (mode == 2u && !bad) { bad = f32(mask[b * p.m_batch + key]) == 0.0; }
  return select(0.0, INVALID, bad);
}

// Biases of this thread's 4 keys of the block at k0: keys k0 + tx + TC·c (component c).
fn block_bias(b: u32, k0: u32, tx: u32, mode: u32) -> vec4<f32> {
  return vec4<f32>(
    key_bias(b, k0 + tx, mode),
    key_bias(b, k0 + tx + TC, mode),
    key_bias(b, k0 + tx + 2u * TC, mode),
    key_bias(b, k0 + tx + 3u * TC, mode),
  );
}

// Stages the workgroup's BQ query rows (rows past Tq repeat the last) of head h, batch b.
fn stage_q(b: u32, h: u32, row0: u32, lid: u32) {
  for (var j = lid; j < BQ * D4; j += WG) {
    let row = min(row0 + j / D4, p.tq - 1u);
    let at = b * p.q_batch + row * p.q_row + p.q_off + h * HD + (j % D4) * 4u;
    let r = j / D4;
    qs[(r / 4u) * QG + (r % 4u) * QR + j % D4] = H4(ld4(at, 0u) * p.scale_log2);
  }
}

// The block's running row maxima: this thread's scores s0..s3 (rows 4·ty + r against its 4
// keys) reduced with the other TC threads' of the same rows and with m. A barrier inside:
// every thread calls it, after its last read of the staged k.
fn block_max(m: vec4<f32>, s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>, ty: u32, tx: u32) -> vec4<f32> {
  red[ty * TC + tx] = vec4<f32>(hmax(s0), hmax(s1), hmax(s2), hmax(s3));
  workgroupBarrier();
  var mn = m;
  for (var t = 0u; t < TC; t++) { mn = max(mn, red[ty * TC + t]); }
  return mn;
}

// 1 / the row sums of rows 4·ty .. 4·ty+3 (0 for rows without a live key), reducing each
// thread's partial sums l over the TC threads of a row. Every thread calls it.
fn row_inv(l: vec4<f32>, ty: u32, tx: u32) -> vec4<f32> {
  workgroupBarrier();
  red[ty * TC + tx] = l;
  workgroupBarrier();
  var lt = vec4<f32>(0.0);
  for (var t = 0u; t < TC; t++) { lt += red[ty * TC + t]; }
  return select(vec4<f32>(0.0), 1.0 / lt, lt > vec4<f32>(0.0));
}

// One output row's vec4 (y = o·inv) at element `at`, unless the row is past Tq.
fn store_row(row: u32, at: u32, y: vec4<f32>) {
  if (row >= p.tq) { return; }
  st4(at, y);
}
