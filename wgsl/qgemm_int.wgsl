// Integer GEMM for GPUs: Y = s_token·s_row·Σ_k x8·w8 (+ the GEMM epilogue), x8 the
// per-token int8 activations (act_quant.wgsl: four a word, rows of K4 words) and w8 the
// weight decoded to int8 on load (qgemm_dec.wgsl, MODE 2 LUT, 3 direct, 4 affine, 6: TLQ
// compact, its int8 LUTs built per workgroup by qgemm_tlq_wg.wgsl, or 7 affine in groups).
// The structure is gemm_reg.wgsl's: a TY×TX workgroup computes a BM×BN tile (BM = 8·TY,
// BN = 8·TX), each invocation an 8×8 block of i32 sums as two 4-row halves BM/2 apart by two
// 4-column halves BN/2 apart; K advances BKW words (4·BKW int8) at a time through two workgroup buffers
// stored k-major (four rows a vec4<u32>), the next tile fetched into registers while the
// current one is multiplied. Per word step: 4 vec4<u32> reads, 64 dot4i8 (256 MACs).
// With GROUPW > 0 the activations have a scale per group of GROUPW words (act_quant.wgsl's
// quant_groups, xsc [M, K4/GROUPW]): at each group's end (GROUPW a multiple of BKW) the i32
// sums are scaled into f32 accumulators and restart from zero. With ASYM too, x̂ = Δ·q + z per
// group (xsc: the Δs [M, G] then the zs [M, G]): each column's Σ w8 over the group (its words
// dotted with ones) times z is added at the flush as well. With WGW > 0 (MODE 7) the weights'
// scales are per group too (qgemm_int_scales.wgsl, composed in: the scales and the spans).
// With LR4 > 0 a low-rank branch U·Bᵀ is added before the epilogue (qgemm_int_lowrank.wgsl).
override TX: u32 = 16u;
override TY: u32 = 16u;
override BKW: u32 = 4u;  // K tile in words: 4 or 8 (tile loads split evenly, ≤ 4 words each)
override RAW: u32 = 0u;  // 1: store the i32 sums as f32 bit patterns (tests; f32 output)

@group(0) @binding(1) var<storage, read> xq: array<u32>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(7) var<storage, read> wq: array<u32>;

// Sized to the tile (2 buffers × BKW × BM/4), or to the 16 ranks the low-rank branch stages
// (LR4 comes from qgemm_int_lowrank.wgsl or its stub, composed before this file): workgroup
// memory bounds how many workgroups share an SM (see gemm_reg.wgsl).
var<workgroup> xsh: array<vec4<u32>, 4u * max(BKW, select(0u, 8u, LR4 > 0u)) * TY>;
var<workgroup> wsh: array<vec4<u32>, 4u * max(BKW, select(0u, 8u, LR4 > 0u)) * TX>;

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

// The low-rank branch (LR4 > 0, qgemm_int_lowrank.wgsl): stages ranks r0 … r0 + 15 into the
// free tile buffers, xsh (the tile's rows of U) and wsh (its columns of B): rank r of tile row
// i at xsh[r·BM/4 + i/4][i % 4] (f32 bits), as the K loop stores k.
fn lr_stage(m0: u32, n0: u32, tid: u32, nt: u32, r0: u32) {
  for (var v = tid; v < 4u * bm(); v += nt) {
    let i = v / 4u;
    let q = v % 4u;
    let u = lr_u(m0 + i, r0 / 4u + q);
    for (var j = 0u; j < 4u; j++) { xsh[(4u * q + j) * (bm() / 4u) + i / 4u][i % 4u] = bitcast<u32>(u[j]); }
  }
  for (var v = tid; v < 4u * bn(); v += nt) {
    let i = v / 4u;
    let q = v % 4u;
    let b = lr_b(n0 + i, r0 / 4u + q);
    for (var j = 0u; j < 4u; j++) { wsh[(4u * q + j) * (bn() / 4u) + i / 4u][i % 4u] = bitcast<u32>(b[j]); }
  }
}

fn d4(a: u32, b: vec4<u32>) -> vec4<i32> {
  return vec4<i32>(dot4i8(a, b.x), dot4i8(a, b.y), dot4i8(a, b.z), dot4i8(a, b.w));
}

// Asymmetric: the zero point's share, z·Σ w8 over the group, of four columns.
fn accz(f: ptr<function, vec4<f32>>, ws: vec4<i32>, z: vec4<f32>) { *f += vec4<f32>(ws) * z; }

fn acc2(f: ptr<function, vec4<f32>>, c: ptr<function, vec4<i32>>, s: vec4<f32>) {
  *f += vec4<f32>(*c) * s;
  *c = vec4<i32>(0);
}

// Stores f32 sums: scaled by the weight's row scales unless they are in already (weight
// groups, or the low-rank path that scaled them before adding its branch).
fn store4f(row: u32, col: u32, v: vec4<f32>) {
  if (row >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let c = col + j;
    if (c < p.N) { gemm_store(row, c, select(v[j] * wscale(c), v[j], WGW > 0u || LR4 > 0u)); }
  }
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
  // Grouped scales: the f32 sums of the finished groups, rows as the c's.
  var f0 = vec4<f32>(0.0); var f1 = vec4<f32>(0.0); var f2 = vec4<f32>(0.0); var f3 = vec4<f32>(0.0);
  var f4 = vec4<f32>(0.0); var f5 = vec4<f32>(0.0); var f6 = vec4<f32>(0.0); var f7 = vec4<f32>(0.0);
  var f8 = vec4<f32>(0.0); var f9 = vec4<f32>(0.0); var f10 = vec4<f32>(0.0); var f11 = vec4<f32>(0.0);
  var f12 = vec4<f32>(0.0); var f13 = vec4<f32>(0.0); var f14 = vec4<f32>(0.0); var f15 = vec4<f32>(0.0);
  var ws0 = vec4<i32>(0); var ws1 = vec4<i32>(0);  // asymmetric: Σ w8 of this group, 8 columns

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
      if (ASYM) { ws0 += d4(0x01010101u, b0); ws1 += d4(0x01010101u, b1); }
    }
    if (flushw() > 0u && ((t + 1u) * BKW) % flushw() == 0u) {
      let kw = t * BKW;
      let r0 = m0 + 4u * lid.y;
      let r4 = r0 + bm() / 2u;
      let col = n0 + 4u * lid.x;
      let wa = wscale4(col, kw);
      let wb = wscale4(col + bn() / 2u, kw);
      let s0 = xscale(r0, kw); let s1 = xscale(r0 + 1u, kw);
      let s2 = xscale(r0 + 2u, kw); let s3 = xscale(r0 + 3u, kw);
      let s4 = xscale(r4, kw); let s5 = xscale(r4 + 1u, kw);
      let s6 = xscale(r4 + 2u, kw); let s7 = xscale(r4 + 3u, kw);
      acc2(&f0, &c0, s0 * wa); acc2(&f1, &c1, s0 * wb); acc2(&f2, &c2, s1 * wa); acc2(&f3, &c3, s1 * wb);
      acc2(&f4, &c4, s2 * wa); acc2(&f5, &c5, s2 * wb); acc2(&f6, &c6, s3 * wa); acc2(&f7, &c7, s3 * wb);
      acc2(&f8, &c8, s4 * wa); acc2(&f9, &c9, s4 * wb); acc2(&f10, &c10, s5 * wa); acc2(&f11, &c11, s5 * wb);
      acc2(&f12, &c12, s6 * wa); acc2(&f13, &c13, s6 * wb); acc2(&f14, &c14, s7 * wa); acc2(&f15, &c15, s7 * wb);
      if (ASYM) {
        let g = kw / GROUPW;
        let z0 = gzero(r0, g); let z1 = gzero(r0 + 1u, g);
        let z2 = gzero(r0 + 2u, g); let z3 = gzero(r0 + 3u, g);
        let z4 = gzero(r4, g); let z5 = gzero(r4 + 1u, g);
        let z6 = gzero(r4 + 2u, g); let z7 = gzero(r4 + 3u, g);
        accz(&f0, ws0, z0 * wa); accz(&f1, ws1, z0 * wb); accz(&f2, ws0, z1 * wa); accz(&f3, ws1, z1 * wb);
        accz(&f4, ws0, z2 * wa); accz(&f5, ws1, z2 * wb); accz(&f6, ws0, z3 * wa); accz(&f7, ws1, z3 * wb);
        accz(&f8, ws0, z4 * wa); accz(&f9, ws1, z4 * wb); accz(&f10, ws0, z5 * wa); accz(&f11, ws1, z5 * wb);
        accz(&f12, ws0, z6 * wa); accz(&f13, ws1, z6 * wb); accz(&f14, ws0, z7 * wa); accz(&f15, ws1, z7 * wb);
        ws0 = vec4<i32>(0);
        ws1 = vec4<i32>(0);
      }
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
  if (LR4 > 0u) { // the low-rank branch: every sum scaled, then U·Bᵀ added (16 ranks at a time)
    let colb = col + bn() / 2u;
    let r0 = m0 + 4u * lid.y;
    let r4 = r0 + bm() / 2u;
    if (flushw() == 0u) { // per-token scales: the sums are still integers
      let s0 = xscale(r0, 0u); let s1 = xscale(r0 + 1u, 0u);
      let s2 = xscale(r0 + 2u, 0u); let s3 = xscale(r0 + 3u, 0u);
      let s4 = xscale(r4, 0u); let s5 = xscale(r4 + 1u, 0u);
      let s6 = xscale(r4 + 2u, 0u); let s7 = xscale(r4 + 3u, 0u);
      f0 = vec4<f32>(c0) * s0; f1 = vec4<f32>(c1) * s0; f2 = vec4<f32>(c2) * s1; f3 = vec4<f32>(c3) * s1;
      f4 = vec4<f32>(c4) * s2; f5 = vec4<f32>(c5) * s2; f6 = vec4<f32>(c6) * s3; f7 = vec4<f32>(c7) * s3;
      f8 = vec4<f32>(c8) * s4; f9 = vec4<f32>(c9) * s4; f10 = vec4<f32>(c10) * s5; f11 = vec4<f32>(c11) * s5;
      f12 = vec4<f32>(c12) * s6; f13 = vec4<f32>(c13) * s6; f14 = vec4<f32>(c14) * s7; f15 = vec4<f32>(c15) * s7;
    }
    // The weight's row scales, unless its groups' scales are in the sums already.
    var wa = vec4<f32>(1.0);
    var wb = vec4<f32>(1.0);
    if (WGW == 0u) {
      wa = vec4<f32>(wscale(min(col, p.N - 1u)), wscale(min(col + 1u, p.N - 1u)),
                     wscale(min(col + 2u, p.N - 1u)), wscale(min(col + 3u, p.N - 1u)));
      wb = vec4<f32>(wscale(min(colb, p.N - 1u)), wscale(min(colb + 1u, p.N - 1u)),
                     wscale(min(colb + 2u, p.N - 1u)), wscale(min(colb + 3u, p.N - 1u)));
    }
    f0 *= wa; f1 *= wb; f2 *= wa; f3 *= wb; f4 *= wa; f5 *= wb; f6 *= wa; f7 *= wb;
    f8 *= wa; f9 *= wb; f10 *= wa; f11 *= wb; f12 *= wa; f13 *= wb; f14 *= wa; f15 *= wb;
    for (var rk = 0u; rk < 4u * LR4; rk += 16u) {
      workgroupBarrier(); // the tile buffers' last readers are done
      lr_stage(m0, n0, tid, TX * TY, rk);
      workgroupBarrier();
      for (var r = 0u; r < min(16u, 4u * LR4 - rk); r++) {
        let a0 = bitcast<vec4<f32>>(xsh[r * (bm() / 4u) + lid.y]);
        let a1 = bitcast<vec4<f32>>(xsh[r * (bm() / 4u) + lid.y + bm() / 8u]);
        let b0 = bitcast<vec4<f32>>(wsh[r * (bn() / 4u) + lid.x]);
        let b1 = bitcast<vec4<f32>>(wsh[r * (bn() / 4u) + lid.x + bn() / 8u]);
        f0 = fma(vec4<f32>(a0.x), b0, f0); f1 = fma(vec4<f32>(a0.x), b1, f1);
        f2 = fma(vec4<f32>(a0.y), b0, f2); f3 = fma(vec4<f32>(a0.y), b1, f3);
        f4 = fma(vec4<f32>(a0.z), b0, f4); f5 = fma(vec4<f32>(a0.z), b1, f5);
        f6 = fma(vec4<f32>(a0.w), b0, f6); f7 = fma(vec4<f32>(a0.w), b1, f7);
        f8 = fma(vec4<f32>(a1.x), b0, f8); f9 = fma(vec4<f32>(a1.x), b1, f9);
        f10 = fma(vec4<f32>(a1.y), b0, f10); f11 = fma(vec4<f32>(a1.y), b1, f11);
        f12 = fma(vec4<f32>(a1.z), b0, f12); f13 = fma(vec4<f32>(a1.z), b1, f13);
        f14 = fma(vec4<f32>(a1.w), b0, f14); f15 = fma(vec4<f32>(a1.w), b1, f15);
      }
    }
  }
  if (flushw() > 0u || LR4 > 0u) {
    for (var i = 0u; i < 8u; i++) {
      var lo = f0;
      var hi = f1;
      switch i {
        case 1u: { lo = f2; hi = f3; }
        case 2u: { lo = f4; hi = f5; }
        case 3u: { lo = f6; hi = f7; }
        case 4u: { lo = f8; hi = f9; }
        case 5u: { lo = f10; hi = f11; }
        case 6u: { lo = f12; hi = f13; }
        case 7u: { lo = f14; hi = f15; }
        default: {}
      }
      let row = m0 + 4u * lid.y + (i % 4u) + select(0u, bm() / 2u, i >= 4u);
      store4f(row, col, lo);
      store4f(row, col + bn() / 2u, hi);
    }
    return;
  }
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
