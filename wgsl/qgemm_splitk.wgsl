// The skinny kernel's split-K sums (qgemm_skinny.wgsl with KS > 1): adds the KS partial
// rows of each output in split order and stores it through the GEMM epilogue
// (gemm_common.wgsl). One invocation per output.
override KS: u32 = 2u;
override WG: u32 = 256u;

@group(0) @binding(1) var<storage, read> part: array<f32>; // [KS, M, N] f32

@compute @workgroup_size(WG)
fn main(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) ng: vec3<u32>,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = (wg.x + wg.y * ng.x) * WG + lid;
  let mn = p.M * p.N;
  if (i >= mn) { return; }
  var acc = part[i];
  for (var z = 1u; z < KS; z++) { acc += part[z * mn + i]; }
  gemm_store(i / p.N, i % p.N, acc);
}
