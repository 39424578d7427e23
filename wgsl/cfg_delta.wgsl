// Classifier-free-guidance delta (runtime/ops/cfg_delta.ts). x is a CFG pair [uncond; cond]
// of `half` rows each: `delta` writes [uncond; cond − uncond]; `combine`, in place on a GEMM
// product [Z_u; Z_d] held in `out`, writes epilogue(Z_u) and epilogue(Z_u + Z_d) (gemm_common's
// gemm_store), so a layer quantizes the small difference CFG amplifies.
// The grid may be 2-D for large arrays: index = x + y * (groups_x * WG).
override WG: u32 = 256u;

// gemm_common.wgsl declares the params (binding 0) and the epilogue's operands (3–6);
// binding 2 is unused (the spec's layout lists bindings 0–6 in order).
@group(0) @binding(1) var<storage, read> x: array<DT>;

// Params (gemm_common.wgsl): M, N the output's shape; p0 the rows of one half.
@compute @workgroup_size(WG)
fn delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  let n = p.M * p.N;
  if (i >= n) { return; }
  let half = p.p0 * p.N;
  var v = f32(x[i]);
  if (i >= half) { v -= f32(x[i - half]); }
  out[i] = DT(v);
}

// One invocation a pair of rows (r, r + half): it reads both before writing either.
@compute @workgroup_size(WG)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  let half = p.p0 * p.N;
  if (i >= half) { return; }
  let u = f32(out[i]);
  let d = f32(out[i + half]);
  let row = i / p.N;
  let col = i % p.N;
  gemm_store(row, col, u);
  gemm_store(row + p.p0, col, u + d);
}
