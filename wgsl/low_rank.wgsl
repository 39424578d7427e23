// Low-rank branch of a quantized linear (runtime/ops/low_rank.ts), in place on the quantized
// product Z [M, N] held in `out`: out = epilogue(Z + U·B) for U = X·Aᵀ [M, R] (the dense GEMM's,
// launched before) and B [R, N], the up factor stored transposed so that neighbouring
// invocations (neighbouring columns of one row) read it coalesced and U's row as a broadcast;
// gemm_common's gemm_store applies the epilogue (bias, activation, gate, residual).
// The grid may be 2-D for large arrays: index = x + y * (groups_x * WG).
override WG: u32 = 256u;

// gemm_common.wgsl declares the params (binding 0) and the epilogue's operands (3–6).
@group(0) @binding(1) var<storage, read> u: array<DT>;
@group(0) @binding(2) var<storage, read> bt: array<DT>;

// Params (gemm_common.wgsl): M, N the output's shape; p0 the rank R.
@compute @workgroup_size(WG)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.M * p.N) { return; }
  let row = i / p.N;
  let col = i % p.N;
  let R = p.p0;
  var acc = f32(out[i]);
  for (var j = 0u; j < R; j++) {
    acc += f32(u[row * R + j]) * f32(bt[j * p.N + col]);
  }
  gemm_store(row, col, acc);
}
