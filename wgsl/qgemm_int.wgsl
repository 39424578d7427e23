// Integer GEMM for GPUs: Y = s_token·s_row·Σ_k x8·w8 (+ the GEMM epilogue), x8 the
// per-token int8 activations (act_quant.wgsl: four a word, rows of K4 words) and w8 the
// weight decoded to int8 on load (qgemm_dec.wgsl, MODE 2 LUT, 3 direct, 4 affine, or 6: TLQ
// compact, its int8 LUTs built per workgroup by qgemm_tlq_wg.wgsl). The structure
// is gemm_reg.wgsl's: a TY×TX workgroup computes a BM×BN tile (BM = 8·TY, BN = 8·TX), each
// invocation an 8×8 block of i32 sums as two 4-row halves BM/2 apart by two 4-column halves
// BN/2 apart; K advances BKW words (4·BKW int8) at a time through two workgroup buffers
// stored k-major (four rows a vec4<u32>), the next tile fetched into registers while the
// current one is multiplied. Per word step: 4 vec4<u32> reads, 64 dot4i8 (256 MACs).
override TX: u32 = 16u;
override TY: u32 = 16u;
override BKW: u32 = 4u;  // K tile in words: 4 or 8 (tile loads split evenly, ≤ 4 words each)
override RAW: u32 = 0u;  // 1: store the i32 sums as f32 bit patterns (tests; f32 output)

@group(0) @binding(1) var<storage, read> xq: array<u32>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(7) var<storage, read> wq: array<u32>;
@group(0) @binding(8) var<storage, read> xsc: array<f32>;

const SH: u32 = 512u; // vec4<u32> per operand: 2 buffers × BKW ≤ 8 × 128 rows / 4

var<workgroup> xsh: array<vec4<u32>, SH>;
var<workgroup> wsh: array<vec4<u32>, SH>;

fn bm() -> u32 { return 8u * TY; }
fn bn() -> u32 { return 8u * TX; }

// The j-th word of this invocation's share of a tile, (row, word) inside the tile:
// neighbouring invocations take neighbouring words of a row.
fn at(j: u32, tid: u32) -> vec2<u32> {
  let v = tid + j * TX * TY;
  return vec2<u32>(v / BKW, v % BKW);
}

fn fetch_x(j: u32, tid: u32, m0: u32, kt: u32) -> u32 {
  let a = at(j, tid);
  let kw = kt + a.y;
  return select(0u, xq[min(m0 + a.x, p.M - 1u) * p.K4 + min(kw, p.K4 - 1u)], kw < p.K4);
}
fn fetch_w(j: u32, tid: u32, n0: u32, kt: u32) -> u32 {
  let a = at(j, tid);
  let kw = kt + a.y;
  return select(0u, wdec_i8(min(n0 + a.x, p.N - 1u), min(kw, p.K4 - 1u)), kw < p.K4);
}
fn put_x(j: u32, tid: u32, buf: u32, v: u32) {
  let a = at(j, tid);
  xsh[buf * BKW * (bm() / 4u) + a.y * (bm() / 4u) + a.x / 4u][a.x % 4u] = v;
}
fn put_w(j: u32, tid: u32, buf: u32, v: u32) {
  let a = at(j, tid);
  wsh[buf * BKW * (bn() / 4u) + a.y * (bn() / 4u) + a.x / 4u][a.x % 4u] = v;
}

fn d4(a: u32, b: vec4<u32>) -> vec4<i32> {
  return vec4<i32>(dot4i8(a, b.x), dot4i8(a, b.y), dot4i8(a, b.z), dot4i8(a, b.w));
}

fn store4(row: u32, col: u32, v: vec4<i32>) {
  if (row >= p.M) { return; }
  let sx = xsc[row];
  for (var j = 0u; j < 4u; j++) {
    let c = col + j;
    if (c < p.N) {
      if (RAW == 1u) {
        out[row * p.N + c] = DT(bitcast<f32>(v[j]));
      } else {
        gemm_store(row, c, f32(v[j]) * sx * wscale(c));
      }
    }
  }
}

@compute @workgroup_size(TX, TY)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tid = lid.y * TX + lid.x;
  let lx = bm() * BKW / (TX * TY); // words per invocation per tile, ≤ 4
  let lw = bn() * BKW / (TX * TY);
  let m0 = wg.y * bm();
  let n0 = wg.x * bn();
  let tiles = (p.K4 + BKW - 1u) / BKW;
  if (MODE == 6u) { tlq_build(n0, bn(), tid, TX * TY); } // TLQ compact: int8 LUTs, s_row
  var c0 = vec4<i32>(0); var c1 = vec4<i32>(0); var c2 = vec4<i32>(0); var c3 = vec4<i32>(0);
  var c4 = vec4<i32>(0); var c5 = vec4<i32>(0); var c6 = vec4<i32>(0); var c7 = vec4<i32>(0);
  var c8 = vec4<i32>(0); var c9 = vec4<i32>(0); var c10 = vec4<i32>(0); var c11 = vec4<i32>(0);
  var c12 = vec4<i32>(0); var c13 = vec4<i32>(0); var c14 = vec4<i32>(0); var c15 = vec4<i32>(0);

  var px0 = fetch_x(0u, tid, m0, 0u);
  var px1 = 0u; var px2 = 0u; var px3 = 0u;
  if (lx > 1u) { px1 = fetch_x(1u, tid, m0, 0u); }
  if (lx > 2u) { px2 = fetch_x(2u, tid, m0, 0u); px3 = fetch_x(3u, tid, m0, 0u); }
  var pw0 = fetch_w(0u, tid, n0, 0u);
  var pw1 = 0u; var pw2 = 0u; var pw3 = 0u;
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
    let cur = t % 2u;
    let more = t + 1u < tiles;
    if (more) {
      let kt = (t + 1u) * BKW;
      px0 = fetch_x(0u, tid, m0, kt);
      if (lx > 1u) { px1 = fetch_x(1u, tid, m0, kt); }
      if (lx > 2u) { px2 = fetch_x(2u, tid, m0, kt); px3 = fetch_x(3u, tid, m0, kt); }
      pw0 = fetch_w(0u, tid, n0, kt);
      if (lw > 1u) { pw1 = fetch_w(1u, tid, n0, kt); }
      if (lw > 2u) { pw2 = fetch_w(2u, tid, n0, kt); pw3 = fetch_w(3u, tid, n0, kt); }
    }
    let ia = cur * BKW * (bm() / 4u) + lid.y;
    let ib = cur * BKW * (bn() / 4u) + lid.x;
    for (var k = 0u; k < BKW; k++) {
      let a0 = xsh[ia + k * (bm() / 4u)];
      let a1 = xsh[ia + k * (bm() / 4u) + bm() / 8u];
      let b0 = wsh[ib + k * (bn() / 4u)];
      let b1 = wsh[ib + k * (bn() / 4u) + bn() / 8u];
      c0 += d4(a0.x, b0); c1 += d4(a0.x, b1);
      c2 += d4(a0.y, b0); c3 += d4(a0.y, b1);
      c4 += d4(a0.z, b0); c5 += d4(a0.z, b1);
      c6 += d4(a0.w, b0); c7 += d4(a0.w, b1);
      c8 += d4(a1.x, b0); c9 += d4(a1.x, b1);
      c10 += d4(a1.y, b0); c11 += d4(a1.y, b1);
      c12 += d4(a1.z, b0); c13 += d4(a1.z, b1);
      c14 += d4(a1.w, b0); c15 += d4(a1.w, b1);
    }
    if (more) {
      let nxt = 1u - cur;
      put_x(0u, tid, nxt, px0);
      if (lx > 1u) { put_x(1u, tid, nxt, px1); }
      if (lx > 2u) { put_x(2u, tid, nxt, px2); put_x(3u, tid, nxt, px3); }
      put_w(0u, tid, nxt, pw0);
      if (lw > 1u) { put_w(1u, tid, nxt, pw1); }
      if (lw > 2u) { put_w(2u, tid, nxt, pw2); put_w(3u, tid, nxt, pw3); }
    }
    workgroupBarrier();
  }

  let col = n0 + 4u * lid.x;
  // One store site in a loop (CPU adapters compile 16 inlined epilogues slowly).
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
    let row = m0 + 4u * lid.y + (i % 4u) + select(0u, bm() / 2u, i >= 4u);
    store4(row, col, lo);
    store4(row, col + bn() / 2u, hi);
  }
}
