// GEMM version 2, for GPUs: register-blocked. A TY×TX workgroup computes a BM×BN tile
// (BM = 8·TY, BN = 8·TX), each invocation an 8×8 block held in 16 vec4 locals, as two
// 4-row halves BM/2 apart by two 4-column halves BN/2 apart (so the vec4 reads of
// workgroup memory by neighbouring invocations are contiguous: no bank conflicts).
// K advances by BK through workgroup buffers stored k-major (transposed); the next tile is
// fetched into registers while the current one is multiplied (two buffers: one barrier a
// tile; SBUF 1, the GPU default: one buffer, two barriers, half the workgroup memory).
// With LMAP 1 neighbouring invocations fetch neighbouring vec4 of one row (whole 32-byte
// sectors), 1.25× faster on an H200 than one vec4 from each of 32 rows.
override TX: u32 = 16u; // invocations along N
override TY: u32 = 16u; // invocations along M
override BK: u32 = 16u; // K tile: 4, 8 or 16; the tile loads must split evenly, ≤ 4 vec4 each
override LMAP: u32 = 1u; // tile loads: 0 = neighbours take neighbouring rows, 1 = neighbouring k (faster)
override EPI: u32 = 0u; // epilogue: 0 = one store site in a loop, 1 = 16 inlined store sites
// Which 8×8 block each invocation computes: 0 = (lid.x, lid.y); 1 = each 32 consecutive
// invocations (an NVIDIA warp) take an 8-wide, 4-tall patch of blocks, so each of their
// vec4 reads of a tile touches 8 neighbouring vec4 of W's and 4 of X's (not 16 and 2).
override WMAP: u32 = 0u;

// 1: one workgroup buffer per operand and two barriers a tile (the next tile is stored
// after everyone has read the current one); 0: two buffers, one barrier.
override SBUF: u32 = 0u;

// Sized to the tile (buffers × BK × BM/4 vec4), not to the largest: workgroup memory bounds
// how many workgroups share an SM (1.4–1.7× on an H200 for BK 8 and 64-row tiles, 2026-11-29_gemm_sweep_smem.md).
// SH/SH4, the staged scalar and vec4, are host-written aliases: f32, or f16 for f16 operands
// (tune.hs: exact, half the bytes a read; the arithmetic stays f32).
var<workgroup> xsh: array<SH4, (2u - SBUF) * 2u * BK * TY>;
var<workgroup> wsh: array<SH4, (2u - SBUF) * 2u * BK * TX>;

fn bm() -> u32 { return 8u * TY; }
fn bn() -> u32 { return 8u * TX; }

// The j-th vec4 of this invocation's share of a tile: (row, k4) inside the tile.
fn tile_at(v: u32, rows: u32) -> vec2<u32> {
  if (LMAP == 1u) { return vec2<u32>(v / (BK / 4u), v % (BK / 4u)); }
  return vec2<u32>(v % rows, v / rows);
}
fn x_at(j: u32, tid: u32) -> vec2<u32> { return tile_at(tid + j * TX * TY, bm()); }
fn w_at(j: u32, tid: u32) -> vec2<u32> { return tile_at(tid + j * TX * TY, bn()); }

fn fetch_x(j: u32, tid: u32, m0: u32, kt4: u32) -> vec4<f32> {
  let at = x_at(j, tid);
  let k4 = kt4 + at.y;
  return select(vec4<f32>(0.0), load_x(min(m0 + at.x, p.M - 1u), min(k4, p.K4 - 1u)), k4 < p.K4);
}
fn fetch_w(j: u32, tid: u32, n0: u32, kt4: u32) -> vec4<f32> {
  let at = w_at(j, tid);
  let k4 = kt4 + at.y;
  return select(vec4<f32>(0.0), load_w(min(n0 + at.x, p.N - 1u), min(k4, p.K4 - 1u)), k4 < p.K4);
}
fn put_x(j: u32, tid: u32, buf: u32, v: vec4<f32>) {
  let at = x_at(j, tid);
  let base = buf * BK * (bm() / 4u) + at.y * 4u * (bm() / 4u) + at.x / 4u;
  let c = at.x % 4u;
  xsh[base][c] = SH(v.x);
  xsh[base + bm() / 4u][c] = SH(v.y);
  xsh[base + 2u * (bm() / 4u)][c] = SH(v.z);
  xsh[base + 3u * (bm() / 4u)][c] = SH(v.w);
}
fn put_w(j: u32, tid: u32, buf: u32, v: vec4<f32>) {
  let at = w_at(j, tid);
  let base = buf * BK * (bn() / 4u) + at.y * 4u * (bn() / 4u) + at.x / 4u;
  let c = at.x % 4u;
  wsh[base][c] = SH(v.x);
  wsh[base + bn() / 4u][c] = SH(v.y);
  wsh[base + 2u * (bn() / 4u)][c] = SH(v.z);
  wsh[base + 3u * (bn() / 4u)][c] = SH(v.w);
}

fn store4(row: u32, col: u32, v: vec4<f32>) {
  if (row >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (col + j < p.N) { gemm_store(row, col + j, v[j]); }
  }
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.y * TX + lid.x;
  var blk = lid.xy;
  if (WMAP == 1u) {
    let warp = tid / 32u;
    let lane = tid % 32u;
    blk = vec2<u32>(lane % 8u + 8u * (warp % (TX / 8u)), lane / 8u + 4u * (warp / (TX / 8u)));
  }
  let lx = bm() * BK / (4u * TX * TY); // vec4 loads per invocation per tile, ≤ 4
  let lw = bn() * BK / (4u * TX * TY);
  let m0 = wg.y * bm();
  let n0 = wg.x * bn();
  let bk4 = BK / 4u;
  let tiles = (p.K4 + bk4 - 1u) / bk4;
  // c<2i+g>: row 4·ty + i (i < 4) or BM/2 + 4·ty + i − 4, column half g; plain locals, so
  // they live in registers whatever the compiler does with private arrays.
  var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
  var c4 = vec4<f32>(0.0); var c5 = vec4<f32>(0.0); var c6 = vec4<f32>(0.0); var c7 = vec4<f32>(0.0);
  var c8 = vec4<f32>(0.0); var c9 = vec4<f32>(0.0); var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0);
  var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0); var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0);

  var px0 = fetch_x(0u, tid, m0, 0u);
  var px1 = vec4<f32>(0.0); var px2 = vec4<f32>(0.0); var px3 = vec4<f32>(0.0);
  if (lx > 1u) { px1 = fetch_x(1u, tid, m0, 0u); }
  if (lx > 2u) { px2 = fetch_x(2u, tid, m0, 0u); px3 = fetch_x(3u, tid, m0, 0u); }
  var pw0 = fetch_w(0u, tid, n0, 0u);
  var pw1 = vec4<f32>(0.0); var pw2 = vec4<f32>(0.0); var pw3 = vec4<f32>(0.0);
  if (lw > 1u) { pw1 = fetch_w(1u, tid, n0, 0u); }
  if (lw > 2u) { pw2 = fetch_w(2u, tid, n0, 0u); pw3 = fetch_w(3u, tid, n0, 0u); }
  put_x(0u, tid, 0u, px0);
  if (lx > 1u) { put_x(1u, tid, 0u, px1); }
  if (lx > 2u) { put_x(2u, tid, 0u, px2); put_x(3u, tid, 0u, px3); }
  put_w(0u, tid, 0u, pw0);
  if (lw > 1u) { put_w(1u, tid, 0u, pw1); }
  if (lw > 2u) { put_w(2u, tid, 0u, pw2); put_w(3u, tid, 0u, pw3); }
  workgroupBarrier();

  for (var t = 0u; t < tiles; t++) {
    let cur = select(t % 2u, 0u, SBUF == 1u);
    let more = t + 1u < tiles;
    if (more) { // fetch the next tile while this one is multiplied
      let kt4 = (t + 1u) * bk4;
      px0 = fetch_x(0u, tid, m0, kt4);
      if (lx > 1u) { px1 = fetch_x(1u, tid, m0, kt4); }
      if (lx > 2u) { px2 = fetch_x(2u, tid, m0, kt4); px3 = fetch_x(3u, tid, m0, kt4); }
      pw0 = fetch_w(0u, tid, n0, kt4);
      if (lw > 1u) { pw1 = fetch_w(1u, tid, n0, kt4); }
      if (lw > 2u) { pw2 = fetch_w(2u, tid, n0, kt4); pw3 = fetch_w(3u, tid, n0, kt4); }
    }
    let ia = cur * BK * (bm() / 4u) + blk.y;
    let ib = cur * BK * (bn() / 4u) + blk.x;
    for (var k = 0u; k < BK; k++) { // one k: 4 vec4 reads of workgroup memory, 64 FMAs
      let a0 = vec4<f32>(xsh[ia + k * (bm() / 4u)]);
      let a1 = vec4<f32>(xsh[ia + k * (bm() / 4u) + bm() / 8u]);
      let b0 = vec4<f32>(wsh[ib + k * (bn() / 4u)]);
      let b1 = vec4<f32>(wsh[ib + k * (bn() / 4u) + bn() / 8u]);
      c0 = fma(vec4<f32>(a0.x), b0, c0); c1 = fma(vec4<f32>(a0.x), b1, c1);
      c2 = fma(vec4<f32>(a0.y), b0, c2); c3 = fma(vec4<f32>(a0.y), b1, c3);
      c4 = fma(vec4<f32>(a0.z), b0, c4); c5 = fma(vec4<f32>(a0.z), b1, c5);
      c6 = fma(vec4<f32>(a0.w), b0, c6); c7 = fma(vec4<f32>(a0.w), b1, c7);
      c8 = fma(vec4<f32>(a1.x), b0, c8); c9 = fma(vec4<f32>(a1.x), b1, c9);
      c10 = fma(vec4<f32>(a1.y), b0, c10); c11 = fma(vec4<f32>(a1.y), b1, c11);
      c12 = fma(vec4<f32>(a1.z), b0, c12); c13 = fma(vec4<f32>(a1.z), b1, c13);
      c14 = fma(vec4<f32>(a1.w), b0, c14); c15 = fma(vec4<f32>(a1.w), b1, c15);
    }
    if (SBUF == 1u) { workgroupBarrier(); } // the one buffer is read by everyone first
    if (more) {
      let nxt = select(1u - cur, 0u, SBUF == 1u);
      put_x(0u, tid, nxt, px0);
      if (lx > 1u) { put_x(1u, tid, nxt, px1); }
      if (lx > 2u) { put_x(2u, tid, nxt, px2); put_x(3u, tid, nxt, px3); }
      put_w(0u, tid, nxt, pw0);
      if (lw > 1u) { put_w(1u, tid, nxt, pw1); }
      if (lw > 2u) { put_w(2u, tid, nxt, pw2); put_w(3u, tid, nxt, pw3); }
    }
    workgroupBarrier();
  }

  let col = n0 + 4u * blk.x;
  if (EPI == 1u) {
    let r0 = m0 + 4u * blk.y;
    let r1 = r0 + bm() / 2u;
    let col1 = col + bn() / 2u;
    store4(r0, col, c0); store4(r0, col1, c1);
    store4(r0 + 1u, col, c2); store4(r0 + 1u, col1, c3);
    store4(r0 + 2u, col, c4); store4(r0 + 2u, col1, c5);
    store4(r0 + 3u, col, c6); store4(r0 + 3u, col1, c7);
    store4(r1, col, c8); store4(r1, col1, c9);
    store4(r1 + 1u, col, c10); store4(r1 + 1u, col1, c11);
    store4(r1 + 2u, col, c12); store4(r1 + 2u, col1, c13);
    store4(r1 + 3u, col, c14); store4(r1 + 3u, col1, c15);
    return;
  }
  // One store site in a loop (not 16 inlined epilogues: CPU adapters compile that slowly).
  for (var i = 0u; i < 8u; i++) {
    var lo = c0;
    var hi = c1;
    switch i {
      case 1u: { lo = c2; hi = c3; }
      case 2u: { lo = c4; hi = c5; }
      case 3u: { lo = c6; hi = c7; }
      case 4u: { lo = c8; hi = c9; }
      case 5u: { lo = c10; hi = c11; }
      case 6u: { lo = c12; hi = c13; }
      case 7u: { lo = c14; hi = c15; }
      default: {}
    }
    let row = m0 + 4u * blk.y + (i % 4u) + select(0u, bm() / 2u, i >= 4u);
    store4(row, col, lo);
    store4(row, col + bn() / 2u, hi);
  }
}
