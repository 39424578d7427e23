// Weight-only quantized GEMM for few rows (M ≤ 64 on GPUs), where the weight read is the
// cost: a workgroup takes 4·CG columns × MR rows; its KL·CG invocations split K into KL
// interleaved lanes (neighbouring lanes read neighbouring words), each decoding the
// weights of 4 columns once per k step and using them for all MR rows; the lanes' partial
// sums are then added in workgroup memory, one row at a time, and stored through the GEMM
// epilogue. Operand loads come from the io fragment (load_x, load_w).
override KL: u32 = 16u; // invocations along K
override CG: u32 = 16u; // column groups of 4; KL·CG ≤ 256
override MR: u32 = 8u;  // rows per workgroup, ≤ 8

var<workgroup> red: array<vec4<f32>, 256>;

@compute @workgroup_size(KL * CG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
  let kl = tid % KL;
  let cg = tid / KL;
  let nb = wg.x * 4u * CG;
  let n0 = nb + 4u * cg;
  let m0 = wg.y * MR;
  let c0 = min(n0, p.N - 1u);
  let c1 = min(n0 + 1u, p.N - 1u);
  let c2 = min(n0 + 2u, p.N - 1u);
  let c3 = min(n0 + 3u, p.N - 1u);
  var acc: array<vec4<f32>, 8>;
  for (var r = 0u; r < 8u; r++) { acc[r] = vec4<f32>(0.0); }
  for (var s = kl; s < p.K4; s += KL) {
    let w0 = load_w(c0, s);
    let w1 = load_w(c1, s);
    let w2 = load_w(c2, s);
    let w3 = load_w(c3, s);
    for (var r = 0u; r < MR; r++) {
      let a = load_x(min(m0 + r, p.M - 1u), s);
      acc[r] += vec4<f32>(dot(a, w0), dot(a, w1), dot(a, w2), dot(a, w3));
    }
  }
  for (var r = 0u; r < MR; r++) {
    red[tid] = acc[r];
    workgroupBarrier();
    if (tid < 4u * CG) {
      let g = tid / 4u;
      let j = tid % 4u;
      var sum = 0.0;
      for (var l = 0u; l < KL; l++) { sum += red[g * KL + l][j]; }
      let row = m0 + r;
      let col = nb + tid;
      if (row < p.M && col < p.N) { gemm_store(row, col, sum); }
    }
    workgroupBarrier();
  }
}
