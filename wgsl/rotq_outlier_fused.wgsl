// Outlier-aware rotate + per-token quantize in one launch, for GPUs when T whole token rows
// fit in workgroup memory (K ≤ 12 blocks). The tiled path (rotq_outlier_tiled.wgsl) runs
// two block GEMMs through [K, Mp] and [M, K] scratch, then a quantize pass; here a
// workgroup keeps its T rows (x ⊙ s) in workgroup memory through both stages.
//
// Invocation (column group cg, token tk) computes columns 4·cg..4·cg+3 of every block of
// its token, in NB named vec4 accumulators (a private array indexed in a loop may be put in
// local memory). A warp is one token's column groups: its reads of the rows are broadcasts
// and its Q reads one contiguous row. Stage 1 multiplies by Q1 and scatters the results
// through the permutation (column c of the row goes to dest[c]) back into workgroup memory;
// stage 2 multiplies by Q2 (the host pastes rotq_outlier_fused_product.wgsl once for each,
// reading its own matrix); then the row's absmax (exact: max does not round) and the
// codes, with the operations of rotq_outlier_quant.wgsl. Each output is the sum over
// i = 0..B−1 in order of `acc + v_i·Q[i][j]`, the expression of the CPU reference
// (runtime/reference/rotq.ts), so the codes match it bit for bit. With GROUP > 0 the rotated
// rows go back into workgroup memory and each run of GROUP values gets its own scale, a
// thread a group (quant_grid.wgsl's arithmetic, as act_quant.wgsl's quant_groups: scales
// [M, K/GROUP], and with ASYM the zero points after them). Only main touches the
// override-sized workgroup arrays (naga panics when a function reads them).
override B: u32 = 128u; // block: a multiple of 4, B/4·T invocations
override T: u32 = 8u;   // tokens per workgroup
override NB: u32 = 9u;  // blocks per row (K / B), 1..12
override BITS: u32 = 8u;
override GROUP: u32 = 0u;     // values a scale (a multiple of 4 dividing K); 0: the token
override ASYM: bool = false;  // grouped: levels from each group's min to its max

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

// mac4: wgsl/rotq_mac4.wgsl (composed before this file).

// Component j of a: selects, not a dynamic index (which may put a register vector, and the
// accumulators with it, in local memory).
fn comp(a: vec4<f32>, j: u32) -> f32 {
  return select(select(select(a.w, a.z, j == 2u), a.y, j == 1u), a.x, j == 0u);
}

@compute @workgroup_size(B / 4u, T)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let B4 = B / 4u;
  let K4 = NB * B4;
  let cg = lid.x;
  let tk = lid.y;
  let tid = tk * B4 + cg;
  let m0 = (wg.x + wg.y * ng.x) * T;
  for (var i = tid; i < T * K4; i += T * B4) { // past the last token: its row, never stored
    let row = min(m0 + i / K4, p.M - 1u);
    let c4 = i % K4;
    xs[i] = vec4<f32>(x[row * K4 + c4]) * s[c4];
  }
  workgroupBarrier();

  let base = tk * K4;
  var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0); var a4 = vec4<f32>(0.0); var a5 = vec4<f32>(0.0);
  var a6 = vec4<f32>(0.0); var a7 = vec4<f32>(0.0); var a8 = vec4<f32>(0.0);
  var a9 = vec4<f32>(0.0); var a10 = vec4<f32>(0.0); var a11 = vec4<f32>(0.0);
  // Stage 1: the blocks times Q1, each output scattered to its permuted column.
  //@product_q1
  workgroupBarrier(); // every invocation has read its stage-1 inputs
  for (var j = 0u; j < 4u; j++) { // block b's column c goes to dest[b·B + c]
    let c = 4u * cg + j;
    var d = dest[c];
    xs[base + d / 4u][d % 4u] = comp(a0, j);
    if (NB > 1u) { d = dest[B + c]; xs[base + d / 4u][d % 4u] = comp(a1, j); }
    if (NB > 2u) { d = dest[2u * B + c]; xs[base + d / 4u][d % 4u] = comp(a2, j); }
    if (NB > 3u) { d = dest[3u * B + c]; xs[base + d / 4u][d % 4u] = comp(a3, j); }
    if (NB > 4u) { d = dest[4u * B + c]; xs[base + d / 4u][d % 4u] = comp(a4, j); }
    if (NB > 5u) { d = dest[5u * B + c]; xs[base + d / 4u][d % 4u] = comp(a5, j); }
    if (NB > 6u) { d = dest[6u * B + c]; xs[base + d / 4u][d % 4u] = comp(a6, j); }
    if (NB > 7u) { d = dest[7u * B + c]; xs[base + d / 4u][d % 4u] = comp(a7, j); }
    if (NB > 8u) { d = dest[8u * B + c]; xs[base + d / 4u][d % 4u] = comp(a8, j); }
    if (NB > 9u) { d = dest[9u * B + c]; xs[base + d / 4u][d % 4u] = comp(a9, j); }
    if (NB > 10u) { d = dest[10u * B + c]; xs[base + d / 4u][d % 4u] = comp(a10, j); }
    if (NB > 11u) { d = dest[11u * B + c]; xs[base + d / 4u][d % 4u] = comp(a11, j); }
  }
  workgroupBarrier();
  // Stage 2: the permuted rows times Q2.
  a0 = vec4<f32>(0.0); a1 = vec4<f32>(0.0); a2 = vec4<f32>(0.0); a3 = vec4<f32>(0.0);
  a4 = vec4<f32>(0.0); a5 = vec4<f32>(0.0); a6 = vec4<f32>(0.0); a7 = vec4<f32>(0.0);
  a8 = vec4<f32>(0.0); a9 = vec4<f32>(0.0); a10 = vec4<f32>(0.0); a11 = vec4<f32>(0.0);
  //@product_q2

  if (GROUP > 0u) {
    workgroupBarrier(); // every invocation has read its stage-2 inputs
    xs[base + cg] = a0;
    if (NB > 1u) { xs[base + B4 + cg] = a1; }
    if (NB > 2u) { xs[base + 2u * B4 + cg] = a2; }
    if (NB > 3u) { xs[base + 3u * B4 + cg] = a3; }
    if (NB > 4u) { xs[base + 4u * B4 + cg] = a4; }
    if (NB > 5u) { xs[base + 5u * B4 + cg] = a5; }
    if (NB > 6u) { xs[base + 6u * B4 + cg] = a6; }
    if (NB > 7u) { xs[base + 7u * B4 + cg] = a7; }
    if (NB > 8u) { xs[base + 8u * B4 + cg] = a8; }
    if (NB > 9u) { xs[base + 9u * B4 + cg] = a9; }
    if (NB > 10u) { xs[base + 10u * B4 + cg] = a10; }
    if (NB > 11u) { xs[base + 11u * B4 + cg] = a11; }
    workgroupBarrier();
    let row = m0 + tk;
    if (row >= p.M) { return; }
    let ng = p.K / GROUP;
    let G4 = GROUP / 4u;
    let qmax = f32((1u << (BITS - 1u)) - 1u);
    for (var g = cg; g < ng; g += B4) {
      let w0 = base + g * G4;
      var lo = xs[w0].x;
      var hi = lo;
      var amax = 0.0;
      for (var w = w0; w < w0 + G4; w++) {
        let v = xs[w];
        lo = min(lo, min(min(v.x, v.y), min(v.z, v.w)));
        hi = max(hi, max(max(v.x, v.y), max(v.z, v.w)));
        let a = abs(v);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
      }
      var d = vec3<f32>(sym_grid(amax, qmax), 0.0);
      if (ASYM) {
        d = asym_grid(lo, hi, qmax);
        scales[p.M * ng + row * ng + g] = d.z;
      }
      scales[row * ng + g] = d.x;
      for (var w = 0u; w < G4; w++) {
        var word = pack_sym(xs[w0 + w], d.y, qmax);
        if (ASYM) { word = pack_asym(xs[w0 + w], lo, d.y, qmax); }
        codes[row * K4 + g * G4 + w] = word;
      }
    }
    return;
  }

  // The token's absmax: this invocation's 4·NB values, then its B/4 column groups.
  var m = abs(a0);
  if (NB > 1u) { m = max(m, abs(a1)); }
  if (NB > 2u) { m = max(m, abs(a2)); }
  if (NB > 3u) { m = max(m, abs(a3)); }
  if (NB > 4u) { m = max(m, abs(a4)); }
  if (NB > 5u) { m = max(m, abs(a5)); }
  if (NB > 6u) { m = max(m, abs(a6)); }
  if (NB > 7u) { m = max(m, abs(a7)); }
  if (NB > 8u) { m = max(m, abs(a8)); }
  if (NB > 9u) { m = max(m, abs(a9)); }
  if (NB > 10u) { m = max(m, abs(a10)); }
  if (NB > 11u) { m = max(m, abs(a11)); }
  red[tid] = max(max(m.x, m.y), max(m.z, m.w));
  workgroupBarrier();
  if (cg == 0u) {
    var mx = 0.0;
    for (var u = 0u; u < B4; u++) { mx = max(mx, red[tk * B4 + u]); }
    red[tk * B4] = mx;
  }
  workgroupBarrier();
  let amax = red[tk * B4];
  let qmax = f32((1u << (BITS - 1u)) - 1u);
  let d = sym_grid(amax, qmax);
  let inv = d.y;
  let row = m0 + tk;
  if (row >= p.M) { return; }
  if (cg == 0u) { scales[row] = d.x; }
  let o = row * K4 + cg;
  codes[o] = pack_sym(a0, inv, qmax);
  if (NB > 1u) { codes[o + B4] = pack_sym(a1, inv, qmax); }
  if (NB > 2u) { codes[o + 2u * B4] = pack_sym(a2, inv, qmax); }
  if (NB > 3u) { codes[o + 3u * B4] = pack_sym(a3, inv, qmax); }
  if (NB > 4u) { codes[o + 4u * B4] = pack_sym(a4, inv, qmax); }
  if (NB > 5u) { codes[o + 5u * B4] = pack_sym(a5, inv, qmax); }
  if (NB > 6u) { codes[o + 6u * B4] = pack_sym(a6, inv, qmax); }
  if (NB > 7u) { codes[o + 7u * B4] = pack_sym(a7, inv, qmax); }
  if (NB > 8u) { codes[o + 8u * B4] = pack_sym(a8, inv, qmax); }
  if (NB > 9u) { codes[o + 9u * B4] = pack_sym(a9, inv, qmax); }
  if (NB > 10u) { codes[o + 10u * B4] = pack_sym(a10, inv, qmax); }
  if (NB > 11u) { codes[o + 11u * B4] = pack_sym(a11, inv, qmax); }
}
