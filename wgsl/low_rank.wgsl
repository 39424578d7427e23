// Low-rank branch of a quantized linear (runtime/ops/low_rank.ts), in place on the quantized
// product Z [M, N] held in `out`: out = epilogue(Z + U·Bᵀ) for U [M, R] = X·Aᵀ and B [N, R]
// (gemm_common's gemm_store: bias, activation, gate, residual). R is small (8–64), so each
// invocation sums its R products itself; the pass is bound by reading and writing Z.
// The grid may be 2-D for large arrays: index = x + y * (groups_x * WG).
override WG: u32 = 256u;

// gemm_common.wgsl declares the params (binding 0) and the epilogue's operands (3–6).
@group(0) @binding(1) var<storage, read> u: array<DT>;
@group(0) @binding(2) var<storage, read> b: array<DT>;

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
    acc += f32(u[row * R + j]) * f32(b[col * R + j]);
  }
  gemm_store(row, col, acc);
}
