// Outlier-aware rotate + per-token quantize in one launch, for GPUs when T whole token rows
// fit in workgroup memory (K ≤ 12 blocks). The tiled path (rotq_outlier_tiled.wgsl) runs
// two block GEMMs through [K, Mp] and [M, K] scratch, then a quantize pass; here a
// workgroup keeps its T rows (x ⊙ s) in workgroup memory through both stages.
//
// Invocation (column group cg, token tk, split h) computes columns 4·cg..4·cg+3 of blocks
// h, h + NS, h + 2·NS, … of its token, in named vec4 accumulators (a private array indexed
// in a loop may be put in local memory); NS 2 halves an invocation's registers. A warp is one token's column groups: its reads of the rows are broadcasts
// and its Q reads one contiguous row. Stage 1 multiplies by Q1 and scatters the results
// through the permutation (column c of the row goes to dest[c]) back into workgroup memory;
// stage 2 multiplies by Q2; then the row's absmax (exact: max does not round) and the
// codes, with the operations of rotq_outlier_quant.wgsl. Each output is the sum over
// i = 0..B−1 in order of `acc + v_i·Q[i][j]`, the expression of the CPU reference
// (runtime/reference/rotq.ts), so the codes match it bit for bit. Only main touches the
// override-sized workgroup arrays (naga panics when a function reads them).
override B: u32 = 128u; // block: a multiple of 4, B/4·T·NS invocations
override T: u32 = 8u;   // tokens per workgroup
override NB: u32 = 9u;  // blocks per row (K / B), 1..12
override BITS: u32 = 8u;
override NS: u32 = 1u;  // invocations per token and column group, splitting its blocks: 1 or 2
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
var<workgroup> red: array<f32, T * NS * B / 4u>;      // per-invocation absmax

// Whether the row has accumulator i's block, h + NS·i (constant for NS 1, where h is 0).
fn has(h: u32, i: u32) -> bool {
  if (NS == 1u) { return NB > i; }
  return h + NS * i < NB;
}

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

@compute @workgroup_size(B / 4u, T, NS)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let B4 = B / 4u;
  let K4 = NB * B4;
  let cg = lid.x;
  let tk = lid.y;
  let h = lid.z;
  let tid = (h * T + tk) * B4 + cg;
  let m0 = (wg.x + wg.y * ng.x) * T;
  for (var i = tid; i < T * K4; i += T * NS * B4) { // past the last token: its row, never stored
    let row = min(m0 + i / K4, p.M - 1u);
    let col4 = i % K4;
    xs[i] = vec4<f32>(x[row * K4 + col4]) * s[col4];
  }
  workgroupBarrier();

  // Accumulator i holds block h + NS·i; has(i) says whether the row has it.
  let base = tk * K4 + h * B4;
  let step = NS * B4; // from one of this invocation's blocks to the next, in vec4
  var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0); var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0);
  var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0); var a8 = vec4<f32>(0.0);
  var a9 = vec4<f32>(0.0); var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
  for (var stage = 1u; stage <= 2u; stage++) {
    a0 = vec4<f32>(0.0); a1 = vec4<f32>(0.0); a2 = vec4<f32>(0.0); a3 = vec4<f32>(0.0);
    a4 = vec4<f32>(0.0); a5 = vec4<f32>(0.0); a6 = vec4<f32>(0.0); a7 = vec4<f32>(0.0);
    a8 = vec4<f32>(0.0); a9 = vec4<f32>(0.0); a10 = vec4<f32>(0.0); a11 = vec4<f32>(0.0);
    // Rows 4·k4..4·k4+3 of Q, columns 4·cg.. (with PF loaded one iteration ahead, so that
    // their latency hides behind the multiply-adds of the iteration before).
    var na = qrow(stage, cg);
    var nb = qrow(stage, cg + B4);
    var nc = qrow(stage, cg + 2u * B4);
    var nd = qrow(stage, cg + 3u * B4);
    for (var k4 = 0u; k4 < B4; k4++) {
      var qa = na;
      var qb = nb;
      var qc = nc;
      var qd = nd;
      if (PF == 1u) {
        let qn = 4u * min(k4 + 1u, B4 - 1u) * B4 + cg; // the last iteration reloads its own
        na = qrow(stage, qn);
        nb = qrow(stage, qn + B4);
        nc = qrow(stage, qn + 2u * B4);
        nd = qrow(stage, qn + 3u * B4);
      } else {
        let qi = 4u * k4 * B4 + cg;
        qa = qrow(stage, qi);
        qb = qrow(stage, qi + B4);
        qc = qrow(stage, qi + 2u * B4);
        qd = qrow(stage, qi + 3u * B4);
      }
      let o = base + k4;
      a0 = mac4(a0, xs[o], qa, qb, qc, qd);
      if (has(h, 1u)) { a1 = mac4(a1, xs[o + step], qa, qb, qc, qd); }
      if (has(h, 2u)) { a2 = mac4(a2, xs[o + 2u * step], qa, qb, qc, qd); }
      if (has(h, 3u)) { a3 = mac4(a3, xs[o + 3u * step], qa, qb, qc, qd); }
      if (has(h, 4u)) { a4 = mac4(a4, xs[o + 4u * step], qa, qb, qc, qd); }
      if (has(h, 5u)) { a5 = mac4(a5, xs[o + 5u * step], qa, qb, qc, qd); }
      if (has(h, 6u)) { a6 = mac4(a6, xs[o + 6u * step], qa, qb, qc, qd); }
      if (has(h, 7u)) { a7 = mac4(a7, xs[o + 7u * step], qa, qb, qc, qd); }
      if (has(h, 8u)) { a8 = mac4(a8, xs[o + 8u * step], qa, qb, qc, qd); }
      if (has(h, 9u)) { a9 = mac4(a9, xs[o + 9u * step], qa, qb, qc, qd); }
      if (has(h, 10u)) { a10 = mac4(a10, xs[o + 10u * step], qa, qb, qc, qd); }
      if (has(h, 11u)) { a11 = mac4(a11, xs[o + 11u * step], qa, qb, qc, qd); }
    }
    if (stage == 2u) { break; }
    workgroupBarrier(); // every invocation has read its stage-1 inputs
    let row0 = tk * K4;
    for (var j = 0u; j < 4u; j++) { // block b's column c goes to dest[b·B + c]
      let c = (h * B4 + cg) * 4u + j; // column of accumulator 0 in the row
      let sc = step * 4u;
      { let d = dest[c]; xs[row0 + d / 4u][d % 4u] = comp(a0, j); }
      if (has(h, 1u)) { let d = dest[c + sc]; xs[row0 + d / 4u][d % 4u] = comp(a1, j); }
      if (has(h, 2u)) { let d = dest[c + 2u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a2, j); }
      if (has(h, 3u)) { let d = dest[c + 3u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a3, j); }
      if (has(h, 4u)) { let d = dest[c + 4u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a4, j); }
      if (has(h, 5u)) { let d = dest[c + 5u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a5, j); }
      if (has(h, 6u)) { let d = dest[c + 6u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a6, j); }
      if (has(h, 7u)) { let d = dest[c + 7u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a7, j); }
      if (has(h, 8u)) { let d = dest[c + 8u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a8, j); }
      if (has(h, 9u)) { let d = dest[c + 9u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a9, j); }
      if (has(h, 10u)) { let d = dest[c + 10u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a10, j); }
      if (has(h, 11u)) { let d = dest[c + 11u * sc]; xs[row0 + d / 4u][d % 4u] = comp(a11, j); }
    }
    workgroupBarrier();
  }

  // The token's absmax: this invocation's values, then its NS·B/4 invocations.
  var m = abs(a0);
  if (has(h, 1u)) { m = max(m, abs(a1)); }
  if (has(h, 2u)) { m = max(m, abs(a2)); }
  if (has(h, 3u)) { m = max(m, abs(a3)); }
  if (has(h, 4u)) { m = max(m, abs(a4)); }
  if (has(h, 5u)) { m = max(m, abs(a5)); }
  if (has(h, 6u)) { m = max(m, abs(a6)); }
  if (has(h, 7u)) { m = max(m, abs(a7)); }
  if (has(h, 8u)) { m = max(m, abs(a8)); }
  if (has(h, 9u)) { m = max(m, abs(a9)); }
  if (has(h, 10u)) { m = max(m, abs(a10)); }
  if (has(h, 11u)) { m = max(m, abs(a11)); }
  let r0 = tk * NS * B4; // the token's entries in red
  red[r0 + h * B4 + cg] = max(max(m.x, m.y), max(m.z, m.w));
  workgroupBarrier();
  if (h == 0u && cg == 0u) {
    var mx = 0.0;
    for (var u = 0u; u < NS * B4; u++) { mx = max(mx, red[r0 + u]); }
    red[r0] = mx;
  }
  workgroupBarrier();
  let amax = red[r0];
  let qmax = f32((1u << (BITS - 1u)) - 1u);
  let delta = amax / qmax;
  let inv = select(0.0, 1.0 / delta, amax > 0.0);
  let row = m0 + tk;
  if (row >= p.M) { return; }
  if (h == 0u && cg == 0u) { scales[row] = delta; }
  let o = row * K4 + h * B4 + cg;
  codes[o] = pack(a0, inv, qmax);
  if (has(h, 1u)) { codes[o + step] = pack(a1, inv, qmax); }
  if (has(h, 2u)) { codes[o + 2u * step] = pack(a2, inv, qmax); }
  if (has(h, 3u)) { codes[o + 3u * step] = pack(a3, inv, qmax); }
  if (has(h, 4u)) { codes[o + 4u * step] = pack(a4, inv, qmax); }
  if (has(h, 5u)) { codes[o + 5u * step] = pack(a5, inv, qmax); }
  if (has(h, 6u)) { codes[o + 6u * step] = pack(a6, inv, qmax); }
  if (has(h, 7u)) { codes[o + 7u * step] = pack(a7, inv, qmax); }
  if (has(h, 8u)) { codes[o + 8u * step] = pack(a8, inv, qmax); }
  if (has(h, 9u)) { codes[o + 9u * step] = pack(a9, inv, qmax); }
  if (has(h, 10u)) { codes[o + 10u * step] = pack(a10, inv, qmax); }
  if (has(h, 11u)) { codes[o + 11u * step] = pack(a11, inv, qmax); }
}
