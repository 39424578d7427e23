// Outlier-aware rotate + per-token quantize in one launch, when T whole token rows fit in
// workgroup memory (K ≤ 12 blocks). The tiled path (rotq_outlier_tiled.wgsl) runs two
// block GEMMs through [K, Mp] and [M, K] scratch, then a quantize pass; here a workgroup
// keeps its T rows (x ⊙ s) in workgroup memory through both stages.
//
// Invocation (column group cg, token tk) computes columns 4·cg..4·cg+3 of every block of
// its token, and with CW 8 also columns B/2 + 4·cg.. (each row value read from workgroup
// memory then feeds 8 multiply-adds instead of 4), in named vec4 accumulators a* (and e*)
// — a private array indexed in a loop may be put in local memory. A warp's invocations
// share one or two tokens: their reads of the rows are broadcasts, their Q reads contiguous.
// Stage 1 multiplies by Q1 and scatters the results through the permutation (column c of
// the row goes to dest[c]) back into workgroup memory; stage 2 multiplies by Q2; then the
// row's absmax (exact: max does not round) and the codes, with the operations of
// rotq_outlier_quant.wgsl. Each output is the sum over i = 0..B−1 in order of
// `acc + v_i·Q[i][j]`, the expression of the CPU reference (runtime/reference/rotq.ts), so
// the codes match it bit for bit. Only main touches the override-sized workgroup arrays
// (naga panics when a function reads them).
override B: u32 = 128u; // block: a multiple of 8, B/CW·T invocations
override T: u32 = 8u;   // tokens per workgroup
override NB: u32 = 9u;  // blocks per row (K / B), 1..12
override BITS: u32 = 8u;
override CW: u32 = 4u;  // columns per invocation and block: 4 or 8
override PF: u32 = 1u;  // 1: Q rows loaded one iteration ahead

struct Params { M: u32, K: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<DT4>;
@group(0) @binding(2) var<storage, read> s: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> q1: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> q2: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> dest: array<u32>;
@group(0) @binding(6) var<storage, read_write> codes: array<u32>;
@group(0) @binding(7) var<storage, read_write> scales: array<f32>;

var<workgroup> xs: array<vec4<f32>, T * NB * B / 4u>; // T rows of K, row-major
var<workgroup> red: array<f32, T * B / 4u>;           // per-invocation absmax

// Row i (vec4 of 4 columns) of the stage's matrix.
fn qrow(stage: u32, i: u32) -> vec4<f32> {
  if (stage == 1u) { return q1[i]; }
  return q2[i];
}

// acc + v_i·Q[i] for the four i of v, in order (the reference's sum).
fn mac4(acc: vec4<f32>, v: vec4<f32>, qa: vec4<f32>, qb: vec4<f32>, qc: vec4<f32>, qd: vec4<f32>) -> vec4<f32> {
  var a = acc;
  a = a + v.x * qa;
  a = a + v.y * qb;
  a = a + v.z * qc;
  a = a + v.w * qd;
  return a;
}

// Component j of a: selects, not a dynamic index (which may put a register vector, and the
// accumulators with it, in local memory).
fn comp(a: vec4<f32>, j: u32) -> f32 {
  return select(select(select(a.w, a.z, j == 2u), a.y, j == 1u), a.x, j == 0u);
}

// Four codes, little-endian in a u32: clamp(round(v·inv), −qmax − 1, qmax).
fn pack(v: vec4<f32>, inv: f32, qmax: f32) -> u32 {
  let q = vec4<i32>(clamp(round(v * inv), vec4<f32>(-qmax - 1.0), vec4<f32>(qmax)));
  return (u32(q.x) & 0xffu) | ((u32(q.y) & 0xffu) << 8u) | ((u32(q.z) & 0xffu) << 16u) |
    ((u32(q.w) & 0xffu) << 24u);
}

@compute @workgroup_size(B / CW, T)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let B4 = B / 4u;
  let K4 = NB * B4;
  let G = B / CW;  // invocations per token
  let H4 = B / 8u; // with CW 8: the second column group, B/2 columns on, in vec4
  let cg = lid.x;
  let tk = lid.y;
  let tid = tk * G + cg;
  let m0 = (wg.x + wg.y * ng.x) * T;
  for (var i = tid; i < T * K4; i += T * G) { // past the last token: its row, never stored
    let row = min(m0 + i / K4, p.M - 1u);
    let col4 = i % K4;
    xs[i] = vec4<f32>(x[row * K4 + col4]) * s[col4];
  }
  workgroupBarrier();

  let base = tk * K4;
  var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0); var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0);
  var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0); var a8 = vec4<f32>(0.0);
  var a9 = vec4<f32>(0.0); var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
  var e0 = vec4<f32>(0.0); var e1 = vec4<f32>(0.0); var e2 = vec4<f32>(0.0);
  var e3 = vec4<f32>(0.0); var e4 = vec4<f32>(0.0); var e5 = vec4<f32>(0.0);
  var e6 = vec4<f32>(0.0); var e7 = vec4<f32>(0.0); var e8 = vec4<f32>(0.0);
  var e9 = vec4<f32>(0.0); var e10 = vec4<f32>(0.0); var e11 = vec4<f32>(0.0);
  for (var stage = 1u; stage <= 2u; stage++) {
    a0 = vec4<f32>(0.0); a1 = vec4<f32>(0.0); a2 = vec4<f32>(0.0); a3 = vec4<f32>(0.0);
    a4 = vec4<f32>(0.0); a5 = vec4<f32>(0.0); a6 = vec4<f32>(0.0); a7 = vec4<f32>(0.0);
    a8 = vec4<f32>(0.0); a9 = vec4<f32>(0.0); a10 = vec4<f32>(0.0); a11 = vec4<f32>(0.0);
    e0 = vec4<f32>(0.0); e1 = vec4<f32>(0.0); e2 = vec4<f32>(0.0); e3 = vec4<f32>(0.0);
    e4 = vec4<f32>(0.0); e5 = vec4<f32>(0.0); e6 = vec4<f32>(0.0); e7 = vec4<f32>(0.0);
    e8 = vec4<f32>(0.0); e9 = vec4<f32>(0.0); e10 = vec4<f32>(0.0); e11 = vec4<f32>(0.0);
    // Rows 4·k4..4·k4+3 of Q, columns 4·cg.. (q*) and with CW 8 B/2 + 4·cg.. (r*); with PF
    // loaded one iteration ahead, so that their latency hides behind the multiply-adds.
    var qa = vec4<f32>(0.0); var qb = vec4<f32>(0.0); var qc = vec4<f32>(0.0); var qd = vec4<f32>(0.0);
    var ra = vec4<f32>(0.0); var rb = vec4<f32>(0.0); var rc = vec4<f32>(0.0); var rd = vec4<f32>(0.0);
    var na = qrow(stage, cg); var nb = qrow(stage, cg + B4);
    var nc = qrow(stage, cg + 2u * B4); var nd = qrow(stage, cg + 3u * B4);
    var sa = vec4<f32>(0.0); var sb = vec4<f32>(0.0); var sc = vec4<f32>(0.0); var sd = vec4<f32>(0.0);
    if (CW == 8u) {
      sa = qrow(stage, cg + H4); sb = qrow(stage, cg + H4 + B4);
      sc = qrow(stage, cg + H4 + 2u * B4); sd = qrow(stage, cg + H4 + 3u * B4);
    }
    for (var k4 = 0u; k4 < B4; k4++) {
      let qi = 4u * select(k4, min(k4 + 1u, B4 - 1u), PF == 1u) * B4 + cg; // next rows (PF)
      if (PF == 1u) {
        qa = na; qb = nb; qc = nc; qd = nd;
        ra = sa; rb = sb; rc = sc; rd = sd;
      }
      na = qrow(stage, qi); nb = qrow(stage, qi + B4);
      nc = qrow(stage, qi + 2u * B4); nd = qrow(stage, qi + 3u * B4);
      if (CW == 8u) {
        sa = qrow(stage, qi + H4); sb = qrow(stage, qi + H4 + B4);
        sc = qrow(stage, qi + H4 + 2u * B4); sd = qrow(stage, qi + H4 + 3u * B4);
      }
      if (PF == 0u) {
        qa = na; qb = nb; qc = nc; qd = nd;
        ra = sa; rb = sb; rc = sc; rd = sd;
      }
      let o = base + k4;
      {
        let v = xs[o];
        a0 = mac4(a0, v, qa, qb, qc, qd);
        if (CW == 8u) { e0 = mac4(e0, v, ra, rb, rc, rd); }
      }
      if (NB > 1u) {
        let v = xs[o + B4];
        a1 = mac4(a1, v, qa, qb, qc, qd);
        if (CW == 8u) { e1 = mac4(e1, v, ra, rb, rc, rd); }
      }
      if (NB > 2u) {
        let v = xs[o + 2u * B4];
        a2 = mac4(a2, v, qa, qb, qc, qd);
        if (CW == 8u) { e2 = mac4(e2, v, ra, rb, rc, rd); }
      }
      if (NB > 3u) {
        let v = xs[o + 3u * B4];
        a3 = mac4(a3, v, qa, qb, qc, qd);
        if (CW == 8u) { e3 = mac4(e3, v, ra, rb, rc, rd); }
      }
      if (NB > 4u) {
        let v = xs[o + 4u * B4];
        a4 = mac4(a4, v, qa, qb, qc, qd);
        if (CW == 8u) { e4 = mac4(e4, v, ra, rb, rc, rd); }
      }
      if (NB > 5u) {
        let v = xs[o + 5u * B4];
        a5 = mac4(a5, v, qa, qb, qc, qd);
        if (CW == 8u) { e5 = mac4(e5, v, ra, rb, rc, rd); }
      }
      if (NB > 6u) {
        let v = xs[o + 6u * B4];
        a6 = mac4(a6, v, qa, qb, qc, qd);
        if (CW == 8u) { e6 = mac4(e6, v, ra, rb, rc, rd); }
      }
      if (NB > 7u) {
        let v = xs[o + 7u * B4];
        a7 = mac4(a7, v, qa, qb, qc, qd);
        if (CW == 8u) { e7 = mac4(e7, v, ra, rb, rc, rd); }
      }
      if (NB > 8u) {
        let v = xs[o + 8u * B4];
        a8 = mac4(a8, v, qa, qb, qc, qd);
        if (CW == 8u) { e8 = mac4(e8, v, ra, rb, rc, rd); }
      }
      if (NB > 9u) {
        let v = xs[o + 9u * B4];
        a9 = mac4(a9, v, qa, qb, qc, qd);
        if (CW == 8u) { e9 = mac4(e9, v, ra, rb, rc, rd); }
      }
      if (NB > 10u) {
        let v = xs[o + 10u * B4];
        a10 = mac4(a10, v, qa, qb, qc, qd);
        if (CW == 8u) { e10 = mac4(e10, v, ra, rb, rc, rd); }
      }
      if (NB > 11u) {
        let v = xs[o + 11u * B4];
        a11 = mac4(a11, v, qa, qb, qc, qd);
        if (CW == 8u) { e11 = mac4(e11, v, ra, rb, rc, rd); }
      }
    }
    if (stage == 2u) { break; }
    workgroupBarrier(); // every invocation has read its stage-1 inputs
    for (var j = 0u; j < 4u; j++) { // block b's column c goes to dest[b·B + c]
      let c = 4u * cg + j;
      {
        var d = dest[c];
        xs[base + d / 4u][d % 4u] = comp(a0, j);
        if (CW == 8u) { d = dest[c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e0, j); }
      }
      if (NB > 1u) {
        var d = dest[B + c];
        xs[base + d / 4u][d % 4u] = comp(a1, j);
        if (CW == 8u) { d = dest[B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e1, j); }
      }
      if (NB > 2u) {
        var d = dest[2u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a2, j);
        if (CW == 8u) { d = dest[2u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e2, j); }
      }
      if (NB > 3u) {
        var d = dest[3u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a3, j);
        if (CW == 8u) { d = dest[3u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e3, j); }
      }
      if (NB > 4u) {
        var d = dest[4u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a4, j);
        if (CW == 8u) { d = dest[4u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e4, j); }
      }
      if (NB > 5u) {
        var d = dest[5u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a5, j);
        if (CW == 8u) { d = dest[5u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e5, j); }
      }
      if (NB > 6u) {
        var d = dest[6u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a6, j);
        if (CW == 8u) { d = dest[6u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e6, j); }
      }
      if (NB > 7u) {
        var d = dest[7u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a7, j);
        if (CW == 8u) { d = dest[7u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e7, j); }
      }
      if (NB > 8u) {
        var d = dest[8u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a8, j);
        if (CW == 8u) { d = dest[8u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e8, j); }
      }
      if (NB > 9u) {
        var d = dest[9u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a9, j);
        if (CW == 8u) { d = dest[9u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e9, j); }
      }
      if (NB > 10u) {
        var d = dest[10u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a10, j);
        if (CW == 8u) { d = dest[10u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e10, j); }
      }
      if (NB > 11u) {
        var d = dest[11u * B + c];
        xs[base + d / 4u][d % 4u] = comp(a11, j);
        if (CW == 8u) { d = dest[11u * B + c + B / 2u]; xs[base + d / 4u][d % 4u] = comp(e11, j); }
      }
    }
    workgroupBarrier();
  }

  // The token's absmax: this invocation's values, then its B/CW invocations.
  var m = abs(a0);
  if (CW == 8u) { m = max(m, abs(e0)); }
  if (NB > 1u) { m = max(m, abs(a1)); if (CW == 8u) { m = max(m, abs(e1)); } }
  if (NB > 2u) { m = max(m, abs(a2)); if (CW == 8u) { m = max(m, abs(e2)); } }
  if (NB > 3u) { m = max(m, abs(a3)); if (CW == 8u) { m = max(m, abs(e3)); } }
  if (NB > 4u) { m = max(m, abs(a4)); if (CW == 8u) { m = max(m, abs(e4)); } }
  if (NB > 5u) { m = max(m, abs(a5)); if (CW == 8u) { m = max(m, abs(e5)); } }
  if (NB > 6u) { m = max(m, abs(a6)); if (CW == 8u) { m = max(m, abs(e6)); } }
  if (NB > 7u) { m = max(m, abs(a7)); if (CW == 8u) { m = max(m, abs(e7)); } }
  if (NB > 8u) { m = max(m, abs(a8)); if (CW == 8u) { m = max(m, abs(e8)); } }
  if (NB > 9u) { m = max(m, abs(a9)); if (CW == 8u) { m = max(m, abs(e9)); } }
  if (NB > 10u) { m = max(m, abs(a10)); if (CW == 8u) { m = max(m, abs(e10)); } }
  if (NB > 11u) { m = max(m, abs(a11)); if (CW == 8u) { m = max(m, abs(e11)); } }
  red[tid] = max(max(m.x, m.y), max(m.z, m.w));
  workgroupBarrier();
  if (cg == 0u) {
    var mx = 0.0;
    for (var u = 0u; u < G; u++) { mx = max(mx, red[tk * G + u]); }
    red[tk * G] = mx;
  }
  workgroupBarrier();
  let amax = red[tk * G];
  let qmax = f32((1u << (BITS - 1u)) - 1u);
  let delta = amax / qmax;
  let inv = select(0.0, 1.0 / delta, amax > 0.0);
  let row = m0 + tk;
  if (row >= p.M) { return; }
  if (cg == 0u) { scales[row] = delta; }
  let o = row * K4 + cg;
  codes[o] = pack(a0, inv, qmax); if (CW == 8u) { codes[o + H4] = pack(e0, inv, qmax); }
  if (NB > 1u) { codes[o + B4] = pack(a1, inv, qmax); if (CW == 8u) { codes[o + B4 + H4] = pack(e1, inv, qmax); } }
  if (NB > 2u) { codes[o + 2u * B4] = pack(a2, inv, qmax); if (CW == 8u) { codes[o + 2u * B4 + H4] = pack(e2, inv, qmax); } }
  if (NB > 3u) { codes[o + 3u * B4] = pack(a3, inv, qmax); if (CW == 8u) { codes[o + 3u * B4 + H4] = pack(e3, inv, qmax); } }
  if (NB > 4u) { codes[o + 4u * B4] = pack(a4, inv, qmax); if (CW == 8u) { codes[o + 4u * B4 + H4] = pack(e4, inv, qmax); } }
  if (NB > 5u) { codes[o + 5u * B4] = pack(a5, inv, qmax); if (CW == 8u) { codes[o + 5u * B4 + H4] = pack(e5, inv, qmax); } }
  if (NB > 6u) { codes[o + 6u * B4] = pack(a6, inv, qmax); if (CW == 8u) { codes[o + 6u * B4 + H4] = pack(e6, inv, qmax); } }
  if (NB > 7u) { codes[o + 7u * B4] = pack(a7, inv, qmax); if (CW == 8u) { codes[o + 7u * B4 + H4] = pack(e7, inv, qmax); } }
  if (NB > 8u) { codes[o + 8u * B4] = pack(a8, inv, qmax); if (CW == 8u) { codes[o + 8u * B4 + H4] = pack(e8, inv, qmax); } }
  if (NB > 9u) { codes[o + 9u * B4] = pack(a9, inv, qmax); if (CW == 8u) { codes[o + 9u * B4 + H4] = pack(e9, inv, qmax); } }
  if (NB > 10u) { codes[o + 10u * B4] = pack(a10, inv, qmax); if (CW == 8u) { codes[o + 10u * B4 + H4] = pack(e10, inv, qmax); } }
  if (NB > 11u) { codes[o + 11u * B4] = pack(a11, inv, qmax); if (CW == 8u) { codes[o + 11u * B4 + H4] = pack(e11, inv, qmax); } }
}
