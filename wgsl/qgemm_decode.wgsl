// Decodes a quantized weight into a dense one, for CPU adapters: there a load costs ~30
// cycles a lane whatever it reads, so decoding inside the GEMM's inner loop (LUT lookups
// per weight) would multiply its loads; decoding once per forward into a pooled buffer
// and running the dense kernel costs N·K/4 loads against the GEMM's M·N·K/16.
//   to_float: W [N, K] (K % 4 == 0) in the storage type, MODE 0 or 1 (qgemm_dec.wgsl);
//   to_int8:  W as int8 words [N, K4], MODE 2 or 4.
override WG: u32 = 64u;

struct Params { M: u32, N: u32, K: u32, K4: u32, rpg: u32, K8: u32, p0: u32, p1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> outf: array<DT4>;
@group(0) @binding(2) var<storage, read> codes: array<u32>;
@group(0) @binding(3) var<storage, read_write> outi: array<u32>;
@group(0) @binding(4) var<storage, read> wq: array<u32>;

fn index_of(gid: vec3<u32>, ng: vec3<u32>) -> u32 { return gid.x + gid.y * ng.x * WG; }

@compute @workgroup_size(WG)
fn to_float(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = index_of(gid, ng);
  if (i >= p.N * p.K4) { return; }
  outf[i] = DT4(wdec4(i / p.K4, i % p.K4));
}

@compute @workgroup_size(WG)
fn to_int8(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = index_of(gid, ng);
  if (i >= p.N * p.K4) { return; }
  outi[i] = wdec_i8(i / p.K4, i % p.K4);
}
