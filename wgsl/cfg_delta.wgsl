// Classifier-free-guidance delta (runtime/ops/cfg_delta.ts). x is a CFG pair [uncond; cond]
// of `half` elements each: `delta` writes [uncond; cond − uncond]; `combine` adds the first
// half's rows of a GEMM product back to the second half's and applies the GEMM epilogue
// (gemm_common.wgsl's gemm_store), so a layer quantizes the small difference CFG amplifies.
// The grid may be 2-D for large arrays: index = x + y * (groups_x * WG).
override WG: u32 = 256u;

// gemm_common.wgsl declares the params (binding 0) and the epilogue's operands (3–6).
@group(0) @binding(1) var<storage, read> x: array<DT>;
@group(0) @binding(2) var<storage, read> x2: array<DT>; // x again (the paired row's view)

// Params (gemm_common.wgsl): M, N the output's shape; p0 the rows of one half.
@compute @workgroup_size(WG)
fn delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  let n = p.M * p.N;
  if (i >= n) { return; }
  let half = p.p0 * p.N;
  var v = f32(x[i]);
  if (i >= half) { v -= f32(x2[i - half]); }
  out[i] = DT(v);
}

@compute @workgroup_size(WG)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  if (i >= p.M * p.N) { return; }
  let row = i / p.N;
  var acc = f32(x[i]);
  if (row >= p.p0) { acc += f32(x2[i - p.p0 * p.N]); }
  gemm_store(row, i % p.N, acc);
}
