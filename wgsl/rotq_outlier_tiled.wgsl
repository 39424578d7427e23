// Outlier-aware rotation as two register-tiled block GEMMs, for GPUs (the row kernel,
// rotq_outlier.wgsl, stays for CPU adapters). Workgroup (b, tile) computes one B-wide
// block b of BM = 8·TY tokens: a [BM, B] · Q [B, B] product, each invocation an 8×8
// output tile in 16 named vec4 locals (as gemm_reg.wgsl: two 4-row halves BM/2 apart by
// two 4-column halves B/2 apart; TX = B/8 invocations along the columns). Q and the
// input advance by BK rows of k through two workgroup buffers stored k-major.
//
// STAGE 1: input (x ⊙ s) [M, K] row-major, Q = Q1; output y1 scattered through the
//   permutation (column dest[k]) into t [K, Mp] column-major (Mp = tokens padded to BM),
//   so that a column of four tokens is one vec4 store and stage 2 reads whole vec4.
// STAGE 2: input t (the permuted y1), Q = Q2; output the rotated rows: y [M, K] (DT,
//   !QUANT) or z [M, K] f32 plus each row's absmax over this block, part [M, nb] (QUANT;
//   rotq_outlier_quant.wgsl then makes the codes).
//
// Each output is a sum over i = 0..B−1 in order of `acc + v_i·Q[i][j]`, the expression of
// the row kernel and the CPU reference (runtime/reference/rotq.ts), so the compiler
// contracts it (or not) as there and the values match them bit for bit.
override B: u32 = 128u;   // block size (a multiple of 16)
override TY: u32 = 16u;   // invocations along tokens: BM = 8·TY tokens per tile
override BK: u32 = 16u;   // k slice: a multiple of 4 dividing B; 2·BK/TX and 2·BK/TY in 1..4
override STAGE: u32 = 1u;
override QUANT: bool = true;

struct Params { M: u32, K: u32, Mp: u32, nb: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT4>;
@group(0) @binding(2) var<storage, read> s: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> dest: array<u32>;
@group(0) @binding(5) var<storage, read_write> t: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> y: array<DT4>;
@group(0) @binding(7) var<storage, read_write> z: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> part: array<f32>;

var<workgroup> xsh: array<vec4<f32>, 4u * BK * TY>; // 2 buffers × BK × BM/4
var<workgroup> wsh: array<vec4<f32>, BK * B / 2u>;  // 2 buffers × BK × B/4

fn tx() -> u32 { return B / 8u; }
fn bm() -> u32 { return 8u * TY; }
fn nt() -> u32 { return tx() * TY; }

// The j-th input vec4 of invocation tid for the slice at k0 of block blk.
fn fetch_a(j: u32, tid: u32, blk: u32, m0: u32, k0: u32) -> vec4<f32> {
  let v = tid + j * nt();
  if (STAGE == 1u) { // (token, k4): neighbours read neighbouring vec4 of one row
    let row = min(m0 + v / (BK / 4u), p.M - 1u); // past the end: the last row, never stored
    let c4 = (blk * B + k0) / 4u + v % (BK / 4u);
    return vec4<f32>(x[row * (p.K / 4u) + c4]) * s[c4];
  }
  // (k, token4): neighbours read neighbouring tokens of one column of t
  let k = blk * B + k0 + v / (bm() / 4u);
  return t[(k * p.Mp + m0) / 4u + v % (bm() / 4u)];
}
fn put_a(j: u32, tid: u32, buf: u32, a: vec4<f32>) {
  let v = tid + j * nt();
  let ld = bm() / 4u;
  if (STAGE == 1u) { // transpose a row's four k into four k-rows
    let row = v / (BK / 4u);
    let base = buf * BK * ld + (v % (BK / 4u)) * 4u * ld + row / 4u;
    let c = row % 4u;
    xsh[base][c] = a.x;
    xsh[base + ld][c] = a.y;
    xsh[base + 2u * ld][c] = a.z;
    xsh[base + 3u * ld][c] = a.w;
    return;
  }
  xsh[buf * BK * ld + v] = a; // already k-major
}
fn fetch_w(j: u32, tid: u32, k0: u32) -> vec4<f32> {
  return q[k0 * (B / 4u) + tid + j * nt()];
}
fn put_w(j: u32, tid: u32, buf: u32, w: vec4<f32>) {
  wsh[buf * BK * (B / 4u) + tid + j * nt()] = w;
}

// Stage 1: column col of the block, tokens r..r+3 (lo) and r+BM/2.. (hi), to column dest.
fn store_t(blk: u32, col: u32, r: u32, lo: vec4<f32>, hi: vec4<f32>) {
  let d = dest[blk * B + col];
  t[(d * p.Mp + r) / 4u] = lo;
  t[(d * p.Mp + r + bm() / 2u) / 4u] = hi;
}

// Stage 2: row `row`, columns col..col+3 and col+B/2..; returns their absmax.
fn store_y(row: u32, col: u32, lo: vec4<f32>, hi: vec4<f32>) -> f32 {
  if (row >= p.M) { return 0.0; }
  let o = (row * p.K + col) / 4u;
  if (QUANT) {
    z[o] = lo;
    z[o + B / 8u] = hi;
    let a = max(abs(lo), abs(hi));
    return max(max(a.x, a.y), max(a.z, a.w));
  }
  y[o] = DT4(lo);
  y[o + B / 8u] = DT4(hi);
  return 0.0;
}

@compute @workgroup_size(B / 8u, TY)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.y * tx() + lid.x;
  let lx = 2u * BK / tx(); // input vec4 loads per invocation per slice, 1..4
  let lw = 2u * BK / TY;   // Q vec4 loads per invocation per slice, 1..4
  let blk = wg.x;
  let m0 = wg.y * bm();
  let tiles = B / BK;
  // c<2i+g>: token 4·ty + i (i < 4) or BM/2 + 4·ty + i − 4, column half g.
  var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
  var c4 = vec4<f32>(0.0); var c5 = vec4<f32>(0.0); var c6 = vec4<f32>(0.0); var c7 = vec4<f32>(0.0);
  var c8 = vec4<f32>(0.0); var c9 = vec4<f32>(0.0); var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
  var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0); var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0);

  var pa0 = fetch_a(0u, tid, blk, m0, 0u);
  var pa1 = vec4<f32>(0.0); var pa2 = vec4<f32>(0.0); var pa3 = vec4<f32>(0.0);
  if (lx > 1u) { pa1 = fetch_a(1u, tid, blk, m0, 0u); }
  if (lx > 2u) { pa2 = fetch_a(2u, tid, blk, m0, 0u); pa3 = fetch_a(3u, tid, blk, m0, 0u); }
  var pw0 = fetch_w(0u, tid, 0u);
  var pw1 = vec4<f32>(0.0); var pw2 = vec4<f32>(0.0); var pw3 = vec4<f32>(0.0);
  if (lw > 1u) { pw1 = fetch_w(1u, tid, 0u); }
  if (lw > 2u) { pw2 = fetch_w(2u, tid, 0u); pw3 = fetch_w(3u, tid, 0u); }
  put_a(0u, tid, 0u, pa0);
  if (lx > 1u) { put_a(1u, tid, 0u, pa1); }
  if (lx > 2u) { put_a(2u, tid, 0u, pa2); put_a(3u, tid, 0u, pa3); }
  put_w(0u, tid, 0u, pw0);
  if (lw > 1u) { put_w(1u, tid, 0u, pw1); }
  if (lw > 2u) { put_w(2u, tid, 0u, pw2); put_w(3u, tid, 0u, pw3); }
  workgroupBarrier();

  for (var kt = 0u; kt < tiles; kt++) {
    let cur = kt % 2u;
    let more = kt + 1u < tiles;
    if (more) { // fetch the next slice while this one is multiplied
      let k0 = (kt + 1u) * BK;
      pa0 = fetch_a(0u, tid, blk, m0, k0);
      if (lx > 1u) { pa1 = fetch_a(1u, tid, blk, m0, k0); }
      if (lx > 2u) { pa2 = fetch_a(2u, tid, blk, m0, k0); pa3 = fetch_a(3u, tid, blk, m0, k0); }
      pw0 = fetch_w(0u, tid, k0);
      if (lw > 1u) { pw1 = fetch_w(1u, tid, k0); }
      if (lw > 2u) { pw2 = fetch_w(2u, tid, k0); pw3 = fetch_w(3u, tid, k0); }
    }
    let ia = cur * BK * (bm() / 4u) + lid.y;
    let ib = cur * BK * (B / 4u) + lid.x;
    for (var k = 0u; k < BK; k++) { // one k: 4 vec4 reads of workgroup memory, 64 multiply-adds
      let a0 = xsh[ia + k * (bm() / 4u)];
      let a1 = xsh[ia + k * (bm() / 4u) + bm() / 8u];
      let b0 = wsh[ib + k * (B / 4u)];
      let b1 = wsh[ib + k * (B / 4u) + B / 8u];
      c0 = c0 + a0.x * b0; c1 = c1 + a0.x * b1;
      c2 = c2 + a0.y * b0; c3 = c3 + a0.y * b1;
      c4 = c4 + a0.z * b0; c5 = c5 + a0.z * b1;
      c6 = c6 + a0.w * b0; c7 = c7 + a0.w * b1;
      c8 = c8 + a1.x * b0; c9 = c9 + a1.x * b1;
      c10 = c10 + a1.y * b0; c11 = c11 + a1.y * b1;
      c12 = c12 + a1.z * b0; c13 = c13 + a1.z * b1;
      c14 = c14 + a1.w * b0; c15 = c15 + a1.w * b1;
    }
    if (more) {
      let nxt = 1u - cur;
      put_a(0u, tid, nxt, pa0);
      if (lx > 1u) { put_a(1u, tid, nxt, pa1); }
      if (lx > 2u) { put_a(2u, tid, nxt, pa2); put_a(3u, tid, nxt, pa3); }
      put_w(0u, tid, nxt, pw0);
      if (lw > 1u) { put_w(1u, tid, nxt, pw1); }
      if (lw > 2u) { put_w(2u, tid, nxt, pw2); put_w(3u, tid, nxt, pw3); }
    }
    workgroupBarrier();
  }

  let r0 = m0 + 4u * lid.y;
  let col = 4u * lid.x;
  if (STAGE == 1u) {
    let h = B / 2u;
    store_t(blk, col, r0, vec4(c0.x, c2.x, c4.x, c6.x), vec4(c8.x, c10.x, c12.x, c14.x));
    store_t(blk, col + 1u, r0, vec4(c0.y, c2.y, c4.y, c6.y), vec4(c8.y, c10.y, c12.y, c14.y));
    store_t(blk, col + 2u, r0, vec4(c0.z, c2.z, c4.z, c6.z), vec4(c8.z, c10.z, c12.z, c14.z));
    store_t(blk, col + 3u, r0, vec4(c0.w, c2.w, c4.w, c6.w), vec4(c8.w, c10.w, c12.w, c14.w));
    store_t(blk, h + col, r0, vec4(c1.x, c3.x, c5.x, c7.x), vec4(c9.x, c11.x, c13.x, c15.x));
    store_t(blk, h + col + 1u, r0, vec4(c1.y, c3.y, c5.y, c7.y), vec4(c9.y, c11.y, c13.y, c15.y));
    store_t(blk, h + col + 2u, r0, vec4(c1.z, c3.z, c5.z, c7.z), vec4(c9.z, c11.z, c13.z, c15.z));
    store_t(blk, h + col + 3u, r0, vec4(c1.w, c3.w, c5.w, c7.w), vec4(c9.w, c11.w, c13.w, c15.w));
    return;
  }

  let c = blk * B + col;
  let r1 = r0 + bm() / 2u;
  let lo = vec4(store_y(r0, c, c0, c1), store_y(r0 + 1u, c, c2, c3), store_y(r0 + 2u, c, c4, c5), store_y(r0 + 3u, c, c6, c7));
  let hi = vec4(store_y(r1, c, c8, c9), store_y(r1 + 1u, c, c10, c11), store_y(r1 + 2u, c, c12, c13), store_y(r1 + 3u, c, c14, c15));
  if (!QUANT) { return; }
  // Row absmax over the block: each invocation's 8 rows, then across the TX invocations of
  // a row through xsh (free: the k loop ended with a barrier; TX·BM/4 ≤ its size).
  let ld = bm() / 4u;
  xsh[lid.x * ld + lid.y] = lo;
  xsh[lid.x * ld + ld / 2u + lid.y] = hi;
  workgroupBarrier();
  if (tid < ld) {
    var mx = xsh[tid];
    for (var u = 1u; u < tx(); u++) { mx = max(mx, xsh[u * ld + tid]); }
    for (var i = 0u; i < 4u; i++) {
      let row = m0 + 4u * tid + i;
      if (row < p.M) { part[row * p.nb + blk] = mx[i]; }
    }
  }
}
