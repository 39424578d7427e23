// Low-rank branch of a quantized linear (runtime/ops/low_rank.ts), in place on the quantized
// product Z [M, N] held in `out`: out = epilogue(Z + (X·Aᵀ)·B) for X [M, K], A [R, K] and
// B [R, N] (the branch's up factor stored transposed, so a row of outputs reads it coalesced);
// gemm_common's gemm_store applies the epilogue (bias, activation, gate, residual).
// A workgroup takes TM rows: first U = X·Aᵀ for them into workgroup memory (X's rows staged a
// chunk of KC columns at a time), then each invocation a column n of the TM rows, B's column
// read once for all of them. U never goes through memory, and the branch is one launch.
override WG: u32 = 128u;
override R: u32 = 16u; // the rank
const TM: u32 = 16u; // rows a workgroup (a private array of TM sums an invocation)
const KC: u32 = 64u; // X columns staged at a time

// gemm_common.wgsl declares the params (binding 0) and the epilogue's operands (3–6).
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> a: array<DT>;
@group(0) @binding(7) var<storage, read> bt: array<DT>;

var<workgroup> xs: array<f32, TM * KC>;
var<workgroup> us: array<f32, TM * R>;

// Params (gemm_common.wgsl): M, N the output's shape, K X's columns.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let row0 = (wid.x + wid.y * ng.x) * TM;
  for (var e = lid; e < TM * R; e += WG) { us[e] = 0.0; }
  for (var k0 = 0u; k0 < p.K; k0 += KC) {
    workgroupBarrier(); // the previous chunk's readers are done
    for (var e = lid; e < TM * KC; e += WG) {
      let row = row0 + e / KC;
      let k = k0 + e % KC;
      xs[e] = select(0.0, f32(x[min(row, p.M - 1u) * p.K + min(k, p.K - 1u)]), row < p.M && k < p.K);
    }
    workgroupBarrier();
    let kn = min(KC, p.K - k0);
    for (var e = lid; e < TM * R; e += WG) { // U[i][j] += X[i, chunk]·A[j, chunk]
      let i = e / R;
      let j = e % R;
      var s = 0.0;
      for (var k = 0u; k < kn; k++) { s += xs[i * KC + k] * f32(a[j * p.K + k0 + k]); }
      us[e] += s;
    }
  }
  workgroupBarrier();
  for (var n = lid; n < p.N; n += WG) {
    var acc: array<f32, TM>;
    // Zeroed by hand each pass: some backends hoist the declaration out of the loop.
    for (var i = 0u; i < TM; i++) { acc[i] = 0.0; }
    for (var j = 0u; j < R; j++) {
      let b = f32(bt[j * p.N + n]);
      for (var i = 0u; i < TM; i++) { acc[i] += us[i * R + j] * b; }
    }
    for (var i = 0u; i < TM; i++) {
      let row = row0 + i;
      if (row < p.M) { gemm_store(row, n, f32(out[row * p.N + n]) + acc[i]); }
    }
  }
}
