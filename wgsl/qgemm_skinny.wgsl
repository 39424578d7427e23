// Weight-only quantized GEMM for few rows (M ≤ 64 on GPUs), where the weight read is the
// cost: a workgroup takes 4·CG columns × MR rows; its KL·CG invocations split K into KL
// interleaved lanes (neighbouring lanes read neighbouring words), each decoding the
// weights of 4 columns once per k step and using them for all MR rows; the lanes' partial
// sums are then added in workgroup memory, one row at a time, and stored through the GEMM
// epilogue. Operand loads come from the io fragment (load_x, load_w). With TLQ compact
// weights (MODE 5) the workgroup first builds its 4·CG rows' LUT (qgemm_tlq_wg.wgsl).
// The MR row accumulators are named variables behind constant `MR > r` guards, not a
// private array indexed in a loop: GPU compilers may put such an array in local memory
// (that made this kernel ~3× slower on an H200).
override KL: u32 = 16u; // invocations along K
override CG: u32 = 16u; // column groups of 4; KL·CG ≤ 256
override MR: u32 = 8u;  // rows per workgroup, ≤ 16
override K2: u32 = 0u;  // 1: two k steps an iteration, their loads issued together

var<workgroup> red: array<vec4<f32>, 256>;

// Row r's dot products with the 4 decoded columns at k step s.
fn row4(r: u32, s: u32, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) -> vec4<f32> {
  let a = load_x(min(r, p.M - 1u), s);
  return vec4<f32>(dot(a, w0), dot(a, w1), dot(a, w2), dot(a, w3));
}

// Row r's dot products at k steps s and (with K2) s2 = s + KL, whose weights v are zero past K.
fn row8(r: u32, s: u32, w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>, s2: u32,
        v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) -> vec4<f32> {
  if (K2 == 0u) { return row4(r, s, w0, w1, w2, w3); }
  return row4(r, s, w0, w1, w2, w3) + row4(r, s2, v0, v1, v2, v3);
}

// Adds the KL lanes' partial sums of row `row` and stores its 4·CG columns.
fn reduce_store(tid: u32, nb: u32, row: u32, acc: vec4<f32>) {
  red[tid] = acc;
  workgroupBarrier();
  if (tid < 4u * CG) {
    let g = tid / 4u;
    let j = tid % 4u;
    var sum = 0.0;
    for (var l = 0u; l < KL; l++) { sum += red[g * KL + l][j]; }
    let col = nb + tid;
    if (row < p.M && col < p.N) { gemm_store(row, col, sum); }
  }
  workgroupBarrier();
}

@compute @workgroup_size(KL * CG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let kl = tid % KL;
  let cg = tid / KL;
  let nb = wg.x * 4u * CG;
  let n0 = nb + 4u * cg;
  let m0 = wg.y * MR;
  if (MODE == 5u) { tlq_build(nb, 4u * CG, tid, KL * CG); } // TLQ compact: the LUT of these columns
  let c0 = min(n0, p.N - 1u);
  let c1 = min(n0 + 1u, p.N - 1u);
  let c2 = min(n0 + 2u, p.N - 1u);
  let c3 = min(n0 + 3u, p.N - 1u);
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  var a4 = vec4<f32>(0.0);
  var a5 = vec4<f32>(0.0);
  var a6 = vec4<f32>(0.0);
  var a7 = vec4<f32>(0.0);
  var a8 = vec4<f32>(0.0);
  var a9 = vec4<f32>(0.0);
  var a10 = vec4<f32>(0.0);
  var a11 = vec4<f32>(0.0);
  var a12 = vec4<f32>(0.0);
  var a13 = vec4<f32>(0.0);
  var a14 = vec4<f32>(0.0);
  var a15 = vec4<f32>(0.0);
  for (var s = kl; s < p.K4; s += (1u + K2) * KL) {
    let w0 = load_w(c0, s);
    let w1 = load_w(c1, s);
    let w2 = load_w(c2, s);
    let w3 = load_w(c3, s);
    let s2 = min(s + KL, p.K4 - 1u);
    var v0 = vec4<f32>(0.0);
    var v1 = vec4<f32>(0.0);
    var v2 = vec4<f32>(0.0);
    var v3 = vec4<f32>(0.0);
    if (K2 == 1u && s + KL < p.K4) {
      v0 = load_w(c0, s2);
      v1 = load_w(c1, s2);
      v2 = load_w(c2, s2);
      v3 = load_w(c3, s2);
    }
    a0 += row8(m0, s, w0, w1, w2, w3, s2, v0, v1, v2, v3);
    if (MR > 1u) { a1 += row8(m0 + 1u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 2u) { a2 += row8(m0 + 2u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 3u) { a3 += row8(m0 + 3u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 4u) { a4 += row8(m0 + 4u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 5u) { a5 += row8(m0 + 5u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 6u) { a6 += row8(m0 + 6u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 7u) { a7 += row8(m0 + 7u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 8u) { a8 += row8(m0 + 8u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 9u) { a9 += row8(m0 + 9u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 10u) { a10 += row8(m0 + 10u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 11u) { a11 += row8(m0 + 11u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 12u) { a12 += row8(m0 + 12u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 13u) { a13 += row8(m0 + 13u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 14u) { a14 += row8(m0 + 14u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
    if (MR > 15u) { a15 += row8(m0 + 15u, s, w0, w1, w2, w3, s2, v0, v1, v2, v3); }
  }
  reduce_store(tid, nb, m0, a0);
  if (MR > 1u) { reduce_store(tid, nb, m0 + 1u, a1); }
  if (MR > 2u) { reduce_store(tid, nb, m0 + 2u, a2); }
  if (MR > 3u) { reduce_store(tid, nb, m0 + 3u, a3); }
  if (MR > 4u) { reduce_store(tid, nb, m0 + 4u, a4); }
  if (MR > 5u) { reduce_store(tid, nb, m0 + 5u, a5); }
  if (MR > 6u) { reduce_store(tid, nb, m0 + 6u, a6); }
  if (MR > 7u) { reduce_store(tid, nb, m0 + 7u, a7); }
  if (MR > 8u) { reduce_store(tid, nb, m0 + 8u, a8); }
  if (MR > 9u) { reduce_store(tid, nb, m0 + 9u, a9); }
  if (MR > 10u) { reduce_store(tid, nb, m0 + 10u, a10); }
  if (MR > 11u) { reduce_store(tid, nb, m0 + 11u, a11); }
  if (MR > 12u) { reduce_store(tid, nb, m0 + 12u, a12); }
  if (MR > 13u) { reduce_store(tid, nb, m0 + 13u, a13); }
  if (MR > 14u) { reduce_store(tid, nb, m0 + 14u, a14); }
  if (MR > 15u) { reduce_store(tid, nb, m0 + 15u, a15); }
}
